"""liclab: train, evaluate and compare learned image codecs.

Heavy imports (torch, CompressAI, Lightning) happen in the submodules that need them, so
``import liclab`` stays cheap.
"""

import warnings

__version__ = "0.1.0"

# Warnings that liclab's own use of its dependencies causes, not the user's code: CompressAI's
# modules call torch.jit.script at import; Lightning's pytree helper builds a LeafSpec.
for _message in (r".*torch\.jit\.script.* is deprecated", r".*isinstance\(treespec, LeafSpec\)"):
    warnings.filterwarnings("ignore", message=_message, category=FutureWarning)


class LiclabError(Exception):
    """An error caused by the user's input (a file, a config value), not by a bug.

    Command-line entry points print it as one line, ``liclab: <message>``, with no traceback.
    """
