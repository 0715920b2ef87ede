"""One module per construct the plugin checks."""
