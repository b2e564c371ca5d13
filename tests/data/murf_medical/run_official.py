"""Run the official MURF medical test.py (CT-MRI or PET-MRI) unchanged under TensorFlow 2.21 (tf.compat.v1).

Stand-ins (written for this driver, not taken from any project): a `tensorflow` module = tf.compat.v1 plus
`contrib.layers.batch_norm` (same variables as contrib: BatchNorm[_k]/{beta,moving_mean,moving_variance},
scale=False, epsilon=0.001, fused batch norm op; batch statistics when is_training else the moving ones) and
`contrib.framework.get_trainable_variables`; tf.device a no-op (CPU); scipy.misc.imread/imresize/imsave
behaving as SciPy 1.1's pilutil; empty IPython/skimage/h5py/matplotlib modules (imported, unused).
usage: run_official.py TASK_DIR (folder holding test.py, f2m_model.py, utils.py, models/, test_imgs/)
"""
import contextlib, os, sys, types
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
from PIL import Image
import tensorflow as real_tf

v1 = real_tf.compat.v1
v1.disable_v2_behavior()

tf = types.ModuleType("tensorflow")
tf.__getattr__ = lambda name: getattr(v1, name)
tf.compat = real_tf.compat
tf.device = lambda *a, **k: contextlib.nullcontext()


def batch_norm(inputs, activation_fn=None, is_training=True, scale=False, center=True, epsilon=0.001, **kw):
    assert activation_fn is None and not scale and center and not kw
    c = int(inputs.shape[-1])
    with v1.variable_scope(None, default_name="BatchNorm"):
        beta = v1.get_variable("beta", [c], initializer=v1.zeros_initializer())
        mm = v1.get_variable("moving_mean", [c], initializer=v1.zeros_initializer(), trainable=False)
        mv = v1.get_variable("moving_variance", [c], initializer=v1.ones_initializer(), trainable=False)
        ones = v1.ones([c])
        if is_training:
            y, _, _ = v1.nn.fused_batch_norm(inputs, ones, beta, epsilon=epsilon, is_training=True)
        else:
            y, _, _ = v1.nn.fused_batch_norm(inputs, ones, beta, mean=mm, variance=mv, epsilon=epsilon,
                                             is_training=False)
    return y


tf.contrib = types.SimpleNamespace(
    layers=types.SimpleNamespace(batch_norm=batch_norm),
    framework=types.SimpleNamespace(
        get_trainable_variables=lambda scope=None: v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope)))
sys.modules["tensorflow"] = tf


# --- scipy.misc as in SciPy 1.1 (pilutil) ---
def bytescale(data, cmin=None, cmax=None, high=255, low=0):
    if data.dtype == np.uint8:
        return data
    cmin = data.min() if cmin is None else cmin
    cmax = data.max() if cmax is None else cmax
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(high - low) / cscale
    bytedata = (data - cmin) * scale + low
    return (bytedata.clip(low, high) + 0.5).astype(np.uint8)


def fromimage(im, flatten=False, mode=None):
    if mode is not None:
        if mode != im.mode:
            im = im.convert(mode)
    elif im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if flatten:
        im = im.convert("F")
    elif im.mode == "1":
        im = im.convert("L")
    return np.array(im)


def toimage(arr, high=255, low=0, cmin=None, cmax=None, channel_axis=None):
    data = np.asarray(arr)
    if data.ndim == 2:
        return Image.frombytes("L", (data.shape[1], data.shape[0]),
                               bytescale(data, high=high, low=low, cmin=cmin, cmax=cmax).tobytes())
    assert data.ndim == 3 and data.shape[2] == 3, data.shape
    return Image.frombytes("RGB", (data.shape[1], data.shape[0]),
                           bytescale(data, high=high, low=low, cmin=cmin, cmax=cmax).tobytes())


def imread(name, flatten=False, mode=None):
    return fromimage(Image.open(name), flatten=flatten, mode=mode)


def imresize(arr, size, interp="bilinear", mode=None):
    im = toimage(arr)
    size = (size[1], size[0])
    return fromimage(im.resize(size, resample={"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}[interp]))


def imsave(name, arr, format=None):
    toimage(arr, channel_axis=2).save(name)


import scipy, scipy.ndimage, scipy.io  # noqa: E401
misc = types.ModuleType("scipy.misc")
misc.imread, misc.imresize, misc.imsave, misc.toimage, misc.bytescale = imread, imresize, imsave, toimage, bytescale
sys.modules["scipy.misc"] = misc
scipy.misc = misc
for name in ("IPython", "IPython.display", "skimage", "h5py", "matplotlib", "matplotlib.pyplot"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["IPython"].display = sys.modules["IPython.display"]
sys.modules["skimage"].img_as_ubyte = None
sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]

task_dir = os.path.abspath(sys.argv[1])
os.chdir(task_dir)
sys.path.insert(0, task_dir)
src = open("test.py").read()
code = compile(src, os.path.join(task_dir, "test.py"), "exec")
g = {"__name__": "__main__", "__file__": "test.py"}
exec(code, g)
