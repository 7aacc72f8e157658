"""CIFAR ResNets, their data, training, checkpoints and the framework-level fault injector.

Everything here imports torch; the campaign CLI imports this package only inside the
commands that need it so that ``fi-campaign --help`` stays instant.
"""
