"""liclab: train, evaluate and compare learned image codecs.

Heavy imports (torch, CompressAI, Lightning) happen in the submodules that need them, so
``import liclab`` stays cheap.
"""

__version__ = "0.1.0"


class LiclabError(Exception):
    """An error caused by the user's input (a file, a config value), not by a bug.

    Command-line entry points print it as one line, ``liclab: <message>``, with no traceback.
    """
