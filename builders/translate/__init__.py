"""Translated prompts: English prompt collections -> sentence-level Opus-MT -> CometKiwi on every segment.

One module per job: ``english`` (English prompt sources), ``segment`` (structure-keeping segmentation), ``mt``
(translation backends), ``batching`` (length batches, OOM back-off), ``models`` (Hub id or folder -> files and
revision), ``cache`` (persistent translation / QE caches), ``qe`` (CometKiwi inference ported onto our
transformers), ``steps`` (datatrove steps), ``pipeline`` (the stages, report and card), ``review`` (the human
check loop), ``cli`` (the ``arabic-prompts translate`` subcommands).
"""

# Model ids checked on their Hub pages (search tool, docs corpus):
# - Helsinki-NLP/opus-mt-en-ar: MarianMT, "a sentence initial language token is required in the form of
#   `>>id<<` (id = valid target language ID)"; target languages include `ara` (MSA).
# - Unbabel/wmt22-cometkiwi-da (InfoXLM-large encoder) and Unbabel/wmt23-cometkiwi-da-xl (XLM-R XL,
#   3.5B parameters, "requires a minimum of 15GB of GPU memory"); both cc-by-nc-sa-4.0, gated on the Hub.
DEFAULT_MT_MODEL = "Helsinki-NLP/opus-mt-en-ar"
DEFAULT_TARGET_TOKEN = ">>ara<<"
DEFAULT_QE_MODEL = "Unbabel/wmt22-cometkiwi-da"
XL_QE_MODEL = "Unbabel/wmt23-cometkiwi-da-xl"
