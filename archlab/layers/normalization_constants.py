"""ImageNet's per-channel normalization (torchvision's), shared by models and layers that
convert between input scalings."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
