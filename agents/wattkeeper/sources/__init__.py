"""Built-in sources: one module each, exposing ``PLUGIN`` (see wattkeeper.source)."""
