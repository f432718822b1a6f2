"""Shared network pieces: the flat uniform draw equals JAX's shaped draw bit for bit, and the 3×3
convolution equals equinox's default one."""

import equinox as eqx
import jax.random as jr
import numpy as np

from galdust.nn import conv2d, uniform_init


def test_uniform_init_is_the_shaped_draw():
    for shape in [(3, 3, 2, 4), (5, 7)]:
        a = uniform_init(jr.PRNGKey(3), shape, 0.25)
        b = jr.uniform(jr.PRNGKey(3), shape, minval=-0.25, maxval=0.25)
        assert a.shape == b.shape and np.array_equal(np.asarray(a), np.asarray(b))


def test_conv2d_is_the_equinox_default():
    a, b = conv2d(3, 8, jr.PRNGKey(4), stride=2), eqx.nn.Conv2d(3, 8, 3, stride=2, padding=1, key=jr.PRNGKey(4))
    assert np.array_equal(np.asarray(a.weight), np.asarray(b.weight)) and np.array_equal(np.asarray(a.bias), np.asarray(b.bias))
    assert (a.stride, a.padding, a.weight.shape) == (b.stride, b.padding, b.weight.shape)
