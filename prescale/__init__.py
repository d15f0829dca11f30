"""The prescale command line and the local demo that composes every part."""
