"""Dataset kinds, torch-free so the CLI can offer them as choices without importing torch;
runners.datasets maps each kind (but auto, which detects one) to its dataset class."""

KINDS = ("auto", "folder", "imagenet", "coco", "voc")
