"""Plain-Python twins of the window kernels, for the tests."""

import numpy as np


def unfold(x, geo):
    """im2col by loops: (N, C*KH*KW, OH*OW), rows (c, kh, kw), columns (oh, ow)."""
    N, C, H, W = x.shape
    out = np.zeros((N, C * geo.KH * geo.KW, geo.OH * geo.OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for kh in range(geo.KH):
                for kw in range(geo.KW):
                    r = (c * geo.KH + kh) * geo.KW + kw
                    for oh in range(geo.OH):
                        for ow in range(geo.OW):
                            ih = oh * geo.sh + kh * geo.dh - geo.pt
                            iw = ow * geo.sw + kw * geo.dw - geo.pl
                            if 0 <= ih < H and 0 <= iw < W:
                                out[n, r, oh * geo.OW + ow] = x[n, c, ih, iw]
    return out
