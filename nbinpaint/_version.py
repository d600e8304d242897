"""The package's version, in a module of its own: submodules that record it (twin configs, the server's
``info``, recipes) import it from here, not from the package ``nbinpaint``, whose ``__init__`` imports them."""

__version__ = "0.1.0"
