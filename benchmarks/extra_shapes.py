"""Layer shapes beyond the anchor suite: depthwise, grouped, dilated, non-square kernels,
odd sizes, batch 1, a large kernel with a large stride. Timed against torch by
``extra_shapes_vs_torch.py`` and profiled by ``profile_anchors.py --extra``."""

SHAPES = [  # name, N, C, H, W, F, (KH, KW), stride, padding, dilation, groups
    ("dw_c64_56_k3", 8, 64, 56, 56, 64, (3, 3), 1, 1, 1, 64),
    ("dw_c128_28_k3s2", 16, 128, 28, 28, 128, (3, 3), 2, 1, 1, 128),
    ("grp4_c64_28_k3", 16, 64, 28, 28, 64, (3, 3), 1, 1, 1, 4),
    ("dil2_c32_32_k3", 16, 32, 32, 32, 32, (3, 3), 1, 2, 2, 1),
    ("nonsq_c16_40x30_k1x7", 16, 16, 40, 30, 32, (1, 7), 1, (0, 3), 1, 1),
    ("odd_c12_37x29_k5s3", 16, 12, 37, 29, 24, (5, 5), 3, 2, 1, 1),
    ("b1_c64_56_k3", 1, 64, 56, 56, 64, (3, 3), 1, 1, 1, 1),
    ("bigk_c3_64_k11s4", 16, 3, 64, 64, 32, (11, 11), 4, 2, 1, 1),
]
