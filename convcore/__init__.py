"""convcore: exact, fast 2-D convolution on NumPy via im2col/col2im and GEMMs.

Public API (NCHW everywhere)::

    conv2d, conv2d_forward, conv2d_backward    # functional convolution and gradients
    conv_forward, conv_backward                # drop-ins for the classic naive pair
    im2col, col2im                             # window extraction and its adjoint
    gradcheck                                  # numerical gradient check
    reference                                  # naive loops, the oracle
    get_workspace_limit, set_workspace_limit   # scratch memory bound
    release_workspace                          # free every thread's scratch buffer
    conv_transpose2d, conv_transpose2d_forward, conv_transpose2d_backward
    max_pool2d, max_pool2d_forward, max_pool2d_backward, max_pool_forward, max_pool_backward
    avg_pool2d, avg_pool2d_forward, avg_pool2d_backward
    Conv2D, ConvTranspose2D, MaxPool2D, AvgPool2D   # layers with params, grads, forward, backward
"""

from convcore import reference
from convcore.conv import conv2d, conv2d_backward, conv2d_forward, conv_backward, conv_forward
from convcore.gradient_check import gradcheck
from convcore.layers import AvgPool2D, Conv2D, ConvTranspose2D, MaxPool2D
from convcore.pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool_backward,
    max_pool_forward,
)
from convcore.transpose import conv_transpose2d, conv_transpose2d_backward, conv_transpose2d_forward
from convcore.windows import col2im, im2col
from convcore.workspace import get_workspace_limit, release_workspace, set_workspace_limit

__version__ = "0.1.0"

__all__ = [
    "conv2d",
    "conv2d_forward",
    "conv2d_backward",
    "conv_forward",
    "conv_backward",
    "im2col",
    "col2im",
    "gradcheck",
    "reference",
    "get_workspace_limit",
    "set_workspace_limit",
    "release_workspace",
    "conv_transpose2d",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "max_pool2d",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "max_pool_forward",
    "max_pool_backward",
    "avg_pool2d",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "Conv2D",
    "ConvTranspose2D",
    "MaxPool2D",
    "AvgPool2D",
]
