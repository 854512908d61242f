"""Built-in images: Python programs that behave like the public images tutorials use.

`skiff.images.registry.resolve()` turns an image reference plus a container's command/args into
the argv to run; `python -m skiff.images <program>` runs a built-in program. Nothing is imported
here, so that starting a built-in stays cheap.
"""
