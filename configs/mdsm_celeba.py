"""MDSM on CelebA at 32x32 with random horizontal flips; otherwise the CIFAR-10 settings (Res18
d=128, sigma linear 0.05..1.2). Needs a prepared tfds celeb_a."""

from ebmjax.config import defaults


def get_config():
    c = defaults()
    c.data.name = "celeb_a"
    c.data.image_size = 32
    c.data.random_flip = True
    return c
