"""The standalone lighteval custom-tasks file (arabic_prompts.py); installed with the package as ``builders.eval_tasks``
so a wheel install can read it. lighteval loads the file directly (--custom-tasks), not this package."""
