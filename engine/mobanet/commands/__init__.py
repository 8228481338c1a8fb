"""Sub-commands of the `mobanet` CLI; each module has ``register(subparsers, parents)``."""
