"""Vision experiments of both papers (SPEC §3): CIFAR ResNets, KITI-ResNets, the KO Fig. 4 ResNet18
with an FC head and timm ImageNet models (``models``). Submodules are imported on use; importing
``experiments.vision.models`` registers its builders in :data:`experiments.core.registry.MODELS`."""
