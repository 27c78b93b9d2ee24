"""Dataset card templates (jinja). Installed with the package as ``builders.dataset_cards``."""
