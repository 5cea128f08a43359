"""Sources hand messages to the pipeline, each with an acknowledgement callback (see pipeline.Message)."""


class SourceError(Exception):
    """A source cannot start or go on; the one-line message names the thing and the fix."""
