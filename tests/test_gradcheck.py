"""purenn.gradcheck, the public gradient checker.

Every built-in layer, activation and loss passes it (float64 central
differences, rtol 1e-6), and it catches what it promises to catch: a backward
off by 1%, a layer that writes into what it is lent, float32 turned into
float64, randomness from outside ``ctx.rng``, buffers kept between calls, a
``need_dx`` that changes the grads, a workspace buffer read before it is
written, and a wrong gradient anywhere in a network. Each failure message is
checked for what it must name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import pytest

import purenn as pn
import purenn.gradcheck as gc
from purenn.activations import Activation, activation_names, get_activation
from purenn.losses import Huber

RTOL = gc.DEFAULT_RTOL
BUILTIN_ACTIVATIONS = tuple(
    name
    for name in activation_names()
    if get_activation(name).forward.__module__ == "purenn.activations"
)


# ---------------------------------------------------------------- a user layer and its defects


@pn.register_layer
@attrs.frozen
class GradcheckScale(pn.Layer):
    """``y = x * s``, one learned scale per feature, with switchable defects.

    ``dx_error`` / ``grad_error`` scale dx / ds by ``1 + error``; ``defect`` names
    one way of breaking the protocol (see :meth:`forward` and :meth:`backward`).
    """

    dx_error: float = 0.0
    grad_error: float = 0.0
    defect: str = ""

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, rng, in_shape, dtype):
        return {"s": rng.uniform(0.5, 1.5, in_shape).astype(dtype)}

    def forward(self, params, x, ctx):
        s = params["s"]
        if self.defect == "write_x":
            x *= s  # the bug under test: scales the caller's array in place
            return x.copy(), x
        if self.defect == "write_params":
            s[...] = np.abs(s)
        if self.defect == "flip_writeable":
            x.flags.writeable = True  # sneaks past NumPy's refusal
            x[0, 0] += 1.0
        if self.defect == "upcast":
            return x * s.astype(np.float64), x
        if self.defect == "global_random":
            return x * s * (1.0 + np.random.random()), x  # noqa: NPY002 (the defect)
        if self.defect == "undeclared_rng":
            return x * s * (1.0 + ctx.rng.random()), x
        if self.defect == "wrong_shape":
            return (x * s)[:, :-1], x
        if self.defect == "kept_buffer":
            buf = _KEPT.setdefault(x.shape, np.empty(x.shape))
            np.multiply(x, s, out=buf)
            return buf, x
        return x * s, x

    def backward(self, params, cache, dy, ctx):
        x, s = cache, params["s"]
        if self.defect == "write_dy":
            dy *= 1.0
        dx = dy * s * (1.0 + self.dx_error)  # dL/dx = dy * s
        ds = (dy * x).sum(axis=0) * (1.0 + self.grad_error)  # dL/ds = sum_n dy * x
        if self.defect == "need_dx_changes_grads" and not ctx.need_dx:
            ds = ds * 2.0
        return dx, {"s": ds}


_KEPT: dict[tuple, np.ndarray] = {}


@attrs.frozen
class DirtyWorkspace(pn.Layer):
    """``y = 2 x``, accumulated into a work array it assumes to be zero."""

    uses_workspace: ClassVar[bool] = True

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        if ctx.workspace is None:
            acc = np.zeros(x.shape, x.dtype)
        else:
            acc = ctx.workspace.empty("acc", x.shape, x.dtype)  # the bug: not zeroed
        acc += x
        acc += x
        return acc.copy(), None

    def backward(self, params, cache, dy, ctx):
        return dy * 2.0, None


def _raises(layer, in_shape=(5,), **kwargs) -> gc.GradientCheckError:
    with pytest.raises(gc.GradientCheckError) as info:
        gc.check_layer(layer, in_shape, **kwargs)
    return info.value


# ---------------------------------------------------------------- every built-in passes

LAYERS = [
    *((pn.Dense(4, act), (5,)) for act in BUILTIN_ACTIVATIONS),
    (pn.Dense(3, "relu", weight_init="glorot_uniform", bias_init=0.1), (4,)),
    (pn.Dropout(0.0), (6,)),
    (pn.Dropout(0.5), (6,)),
    (pn.Dropout(0.3), (2, 3, 3)),
    (pn.Conv2D(2, 3), (2, 5, 5)),
    (pn.Conv2D(2, 3, stride=2, padding="same"), (1, 6, 7)),
    (pn.Conv2D(3, (2, 3), padding=(1, 0), activation="tanh"), (1, 4, 5)),
    (pn.Conv2D(2, 2, padding="same", activation="gelu"), (2, 4, 4)),
    (pn.Conv2D(2, 3, stride=(2, 1), padding=1, activation="leaky_relu"), (1, 5, 4)),
    (pn.MaxPool2D(2), (2, 4, 4)),
    (pn.MaxPool2D(3, stride=2), (1, 7, 7)),
    (pn.MaxPool2D((2, 3), stride=1), (1, 4, 5)),
    (pn.AvgPool2D(2), (2, 5, 5)),
    (pn.AvgPool2D(3, stride=1), (1, 5, 5)),
    (pn.Flatten(), (2, 3, 3)),
]


@pytest.mark.parametrize(("layer", "in_shape"), LAYERS, ids=[repr(lay) for lay, _ in LAYERS])
def test_every_builtin_layer_passes_check_layer(layer, in_shape):
    worst = gc.check_layer(layer, in_shape)
    leaves = ["x", *(["w", "b"] if layer.has_params else [])]
    modes = ["train"] if isinstance(layer, pn.MaxPool2D) else ["train", "eval"]
    # MaxPool2D's backward needs the argmax only a training pass records: no eval keys
    assert sorted(worst) == sorted(f"{m}/{leaf}" for m in modes for leaf in leaves)
    assert all(0.0 <= err <= RTOL for err in worst.values()), worst


@pytest.mark.parametrize("act", BUILTIN_ACTIVATIONS)
def test_every_builtin_activation_passes_check_activation(act):
    worst = gc.check_activation(act, (4, 5))
    assert list(worst) == ["z"] and worst["z"] <= RTOL


LOSSES = [
    ("cross_entropy", (4,), None),
    ("cross_entropy", (4,), np.eye(4)[[0, 3, 1, 1]]),  # one-hot
    ("cross_entropy", (3,), np.array([[0.2, 0.5, 0.3]] * 4)),  # soft targets
    ("binary_cross_entropy", (3,), None),
    ("binary_cross_entropy", (1,), None),
    ("mse", (3,), None),
    ("mae", (3,), None),
    ("huber", (3,), None),
    (Huber(delta=0.5), (3,), None),
    (Huber(delta=2.0), (2,), None),
]


@pytest.mark.parametrize(
    ("loss", "out_shape", "y"),
    LOSSES,
    ids=["ce-int", "ce-one-hot", "ce-soft", "bce", "bce-1", "mse", "mae", "huber", "huber-0.5",
         "huber-2"],
)  # fmt: skip
def test_every_builtin_loss_passes_check_loss(loss, out_shape, y):
    worst = gc.check_loss(loss, out_shape, y)
    assert list(worst) == ["out"] and worst["out"] <= RTOL


SEEN_GAPS: list[np.ndarray] = []


@attrs.frozen
class RecordingHuber(Huber):
    """Huber that records every |out - y| it is given."""

    def value_and_grad(self, out, y):
        SEEN_GAPS.append(np.abs(out - y))
        return super().value_and_grad(out, y)


def test_check_loss_covers_both_sides_of_huber_delta():
    """The default outputs put |out - y| on both sides of delta = 1, and away from 0."""
    SEEN_GAPS.clear()
    gc.check_loss(RecordingHuber(), (3,))
    d = SEEN_GAPS[0]
    assert (d < 1.0).any() and (d > 1.0).any() and d.min() >= 0.25


# ---------------------------------------------------------------- check_layer catches defects


def test_a_correct_user_layer_passes():
    worst = gc.check_layer(GradcheckScale(), (5,))
    assert sorted(worst) == ["eval/s", "eval/x", "train/s", "train/x"]
    assert max(worst.values()) <= RTOL


def test_backward_off_by_one_percent_is_caught():
    err = _raises(GradcheckScale(dx_error=0.01))
    message = str(err)
    assert message.startswith("GradcheckScale(dx_error=0.01")
    assert "gradient (training pass) failed" in message
    assert "\n  x[" in message and "\n  s[" not in message  # dx is wrong, ds is right
    assert "analytic" in message and "vs numeric" in message
    assert err.check == "gradient (training pass)" and err.path == "x" and len(err.index) == 2
    assert err.analytic / err.numeric == pytest.approx(1.01, rel=1e-6)
    assert not err.at_kink and "kink" not in message


def test_param_gradient_off_by_one_percent_is_caught():
    err = _raises(GradcheckScale(grad_error=0.01))
    assert err.path == "s" and "\n  s[" in str(err) and "\n  x[" not in str(err)


def test_writing_into_the_input_is_caught():
    err = _raises(GradcheckScale(defect="write_x"))
    message = str(err)
    assert err.check == "read-only inputs" and err.path == "x"
    assert "forward (training pass) writes into its input x" in message
    assert "read-only" in message  # NumPy's own refusal, quoted
    assert isinstance(err.__cause__, ValueError)


@pytest.mark.parametrize(
    ("defect", "what"),
    [
        ("write_params", "forward (training pass) writes into its input params['s']"),
        ("write_dy", "backward (training pass) writes into its input dy"),
        ("flip_writeable", "a call changed x[0, 0] from"),
    ],
)
def test_writing_into_params_or_dy_is_caught(defect, what):
    err = _raises(GradcheckScale(defect=defect))
    assert err.check == "read-only inputs" and what in str(err)


@pytest.mark.parametrize(
    ("defect", "check", "says"),
    [
        ("upcast", "float32", "dtype float64 for x of shape (3, 5), dtype float32"),
        ("global_random", "repeatability", "may draw randomness only from ctx.rng"),
        ("undeclared_rng", "forward (training pass)", "must declare draws_randomness = True"),
        ("wrong_shape", "output_shape", "returned y of shape (3, 4)"),
        ("kept_buffer", "repeatability", "in the same memory"),
        ("need_dx_changes_grads", "need_dx", "need_dx may only skip dx"),
    ],
)
def test_protocol_breaches_are_caught_by_name(defect, check, says):
    err = _raises(GradcheckScale(defect=defect))
    assert err.check == check
    assert str(err).startswith(f"GradcheckScale(dx_error=0.0, grad_error=0.0, defect={defect!r})")
    assert says in str(err)


def test_a_workspace_buffer_read_before_written_is_caught():
    err = _raises(DirtyWorkspace(), (2, 3, 3))
    assert err.check == "workspace" and "fill every element you read" in str(err)


def test_check_layer_refuses_bad_arguments():
    with pytest.raises(TypeError, match=r"instance of a purenn\.Layer"):
        gc.check_layer(pn.Dense, (3,))
    with pytest.raises(ValueError, match="flat input"):
        gc.check_layer(pn.Dense(3), (2, 3))  # the layer's own output_shape refuses it
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 3\)"):
        gc.check_layer(pn.Dense(3), (3,), x=np.zeros((2, 4)))
    with pytest.raises(TypeError, match="float64"):
        gc.check_layer(pn.Dense(3), (3,), x=np.ones((2, 3), np.float32))


def test_check_layer_is_deterministic():
    assert gc.check_layer(pn.Dropout(0.5), (7,), seed=3) == gc.check_layer(
        pn.Dropout(0.5), (7,), seed=3
    )


# ---------------------------------------------------------------- kinks


def test_a_kink_is_named_and_a_smooth_error_is_not():
    with pytest.raises(gc.GradientCheckError) as info:  # |x| at 0, one-sided "gradient"
        gc.check_input_grad(lambda v: float(np.abs(v).sum()), np.array([0.0, 1.0]), np.ones(2))
    assert info.value.at_kink and "looks like a kink" in str(info.value)
    with pytest.raises(gc.GradientCheckError) as info:  # smooth, 0.1% off
        x = np.array([0.3, 1.0])
        gc.check_input_grad(lambda v: float(np.sin(v).sum()), x, np.cos(x) * 1.001)
    assert not info.value.at_kink and "kink" not in str(info.value)


def test_given_inputs_at_a_kink_fail_with_the_hint():
    """A ReLU pre-activation exactly at 0 (x = 0, zero bias): no redraw for a given x."""
    err = _raises(pn.Dense(3, "relu"), (2,), x=np.zeros((2, 2)))
    assert err.at_kink and err.path in ("x", "b") and "kink" in str(err)


def test_a_kink_in_the_first_draw_is_redrawn():
    """An activation whose kink sits on the first z it sees passes after a redraw."""
    kink = []

    def forward(z):
        if not kink:
            kink.append(float(z.flat[0]))
        return np.maximum(z - kink[0], 0.0)

    def backward(z, a, da):
        return da * (z > kink[0])

    assert gc.check_activation(Activation("shifted_relu", forward, backward))["z"] <= RTOL


# ---------------------------------------------------------------- activations and losses


def test_a_wrong_activation_is_caught():
    tanh = get_activation("tanh")
    wrong = Activation("my_tanh", tanh.forward, lambda z, a, da: da * (1.0 - a * a) * 1.01)
    with pytest.raises(
        gc.GradientCheckError, match=r"(?s)activation 'my_tanh'.*z\[\d, \d\]: error 0.0099"
    ):
        gc.check_activation(wrong)
    upcast = Activation("my_up", tanh.forward, lambda z, a, da: (da * (1.0 - a * a)).astype(float))
    with pytest.raises(gc.GradientCheckError, match="float32") as info:
        gc.check_activation(upcast)
    assert info.value.check == "float32"


def test_an_out_argument_that_is_ignored_is_caught():
    """in_place=True promises that out= gets the result; ignoring it is caught."""
    tanh = get_activation("tanh")

    def backward(z, a, da, out=None):
        return da * (1.0 - a * a)  # computes the right thing but never touches out

    ignores_out = Activation("my_tanh_out", tanh.forward, backward, True)
    with pytest.raises(gc.GradientCheckError, match="not the out array") as info:
        gc.check_activation(ignores_out)
    assert info.value.check == "out="


def test_in_place_backward_that_reads_z_is_caught():
    """in_place=True promises that backward reads only a and da: one that needs z
    (SiLU's does) gives a wrong gradient when a layer hands it a as z."""
    silu = get_activation("silu")

    def forward(z, out=None):
        return np.multiply(z, 1.0 / (1.0 + np.exp(-z)), out=out)

    def backward(z, a, da, out=None):
        return np.multiply(da, silu.backward(z, a, np.ones_like(da)), out=out)

    claims = Activation("my_silu_in_place", forward, backward, True)
    with pytest.raises(gc.GradientCheckError, match="given z = a") as info:
        gc.check_activation(claims)
    assert info.value.check == "out="


@pn.register_loss
@attrs.frozen
class GradcheckLogCosh(pn.Loss):
    """mean log(cosh(out - y)), with a switchable 1% error in its gradient."""

    error: float = 0.0

    def value_and_grad(self, out: np.ndarray, y: Any) -> tuple[float, np.ndarray]:
        d = out - y
        # L = mean log(cosh(d)),  dL/dout = tanh(d) / size
        return float(np.mean(np.log(np.cosh(d)))), np.tanh(d) * ((1.0 + self.error) / d.size)


def test_a_user_loss_passes_and_a_wrong_one_is_caught():
    assert gc.check_loss(GradcheckLogCosh(), (3,))["out"] <= RTOL
    with pytest.raises(
        gc.GradientCheckError, match=r"(?s)loss GradcheckLogCosh\(error=0.01\).*out\["
    ):
        gc.check_loss(GradcheckLogCosh(error=0.01), (3,))


def test_check_loss_makes_valid_targets_or_takes_given_ones():
    with pytest.raises(ValueError, match="expects int labels"):
        gc.check_loss("cross_entropy", (3,), np.zeros((4, 2)))
    out = np.full((4, 3), 0.5)
    assert gc.check_loss("mse", (3,), np.zeros((4, 3)), out=out)["out"] <= RTOL


def test_cross_entropy_names_an_output_that_is_not_flat():
    """Found by the long fuzz run once Python's "values to unpack" counted as an
    internal message: check_loss("cross_entropy", (1, 2)) passed on
    CrossEntropy.check_targets' "too many values to unpack (expected 1)"."""
    with pytest.raises(ValueError, match=r"scores a flat output of k classes per sample, shape "
                       r"\(k,\); got the output shape \(1, 2\)") as err:  # fmt: skip
        gc.check_loss("cross_entropy", (1, 2))
    assert "unpack" not in str(err.value)


# ---------------------------------------------------------------- whole networks


def _mlp_with_dropout():
    spec = pn.Network(
        5,
        [pn.Dense(8, "tanh", bias_init=0.1), pn.Dropout(0.3), pn.Dense(6, "gelu"),
         pn.Dropout(0.2), pn.Dense(3, "softmax")],
    )  # fmt: skip
    rng = np.random.default_rng(1)
    return pn.init(spec, 0, np.float64), rng.normal(size=(6, 5)), rng.integers(0, 3, 6)


def test_check_grads_on_an_mlp_with_dropout():
    params, x, y = _mlp_with_dropout()
    gen = np.random.default_rng(5)
    state = gen.bit_generator.state
    worst = gc.check_grads(params, x, y, rng=gen)
    assert gen.bit_generator.state == state  # the caller's Generator is not advanced
    assert sorted(worst) == [path for path, _ in pn.tree_items(params)]
    assert max(worst.values()) <= RTOL
    assert gc.check_grads(params, x, y, rng=5) == worst  # an int seed: the same Generator
    with pytest.raises(ValueError, match="needs randomness"):
        gc.check_grads(params, x, y)


def test_check_grads_on_a_cnn():
    spec = pn.Network(
        (1, 6, 6),
        [pn.Conv2D(2, 3, padding="same", activation="tanh"), pn.MaxPool2D(2),
         pn.Conv2D(3, 2, activation="silu"), pn.AvgPool2D(2, stride=1), pn.Flatten(),
         pn.Dense(4, "linear")],
        loss="huber",
    )  # fmt: skip
    params = pn.init(spec, 2, np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, 1, 6, 6)), rng.normal(size=(3, 4))
    worst = gc.check_grads(params, x, y, max_entries=None)
    assert len(worst) == 6 and max(worst.values()) <= RTOL


def test_check_grads_catches_a_wrong_gradient_and_names_the_layer():
    spec = pn.Network(
        4, [pn.Dense(5, "tanh"), GradcheckScale(grad_error=0.01), pn.Dense(2, "linear")], "mse"
    )
    params = pn.init(spec, 0, np.float64)
    rng = np.random.default_rng(1)
    with pytest.raises(gc.GradientCheckError) as info:
        gc.check_grads(params, rng.normal(size=(3, 4)), rng.normal(size=(3, 2)))
    err = info.value
    assert err.path == "gradcheckscale_0/s" and err.layer == "gradcheckscale_0 (GradcheckScale)"
    assert "\n  gradcheckscale_0/s[0] in gradcheckscale_0 (GradcheckScale): error" in str(err)
    assert "dense_" not in str(err)  # only the wrong leaf is listed


def test_check_grads_refuses_float32_and_bad_rngs():
    params, x, y = _mlp_with_dropout()
    with pytest.raises(TypeError, match="runs in float64; the params are float32"):
        gc.check_grads(pn.init(params[pn.SPEC_KEY], 0), x.astype(np.float32), y, rng=0)
    with pytest.raises(TypeError, match="rng must be None, an int seed or a numpy"):
        gc.check_grads(params, x, y, rng=np.random.RandomState(0))


# ---------------------------------------------------------------- the function-level helpers


def test_numeric_grads_of_a_quadratic_are_exact():
    params = {"a": np.array([1.0, -2.0]), "b": {"c": np.array([[0.5]])}}
    numeric = gc.numeric_grads(lambda p: float((p["a"] ** 2).sum() + 3 * p["b"]["c"].sum()), params)
    assert list(numeric) == ["a", "b/c"]
    np.testing.assert_allclose(numeric["a"], [2.0, -4.0], rtol=1e-10)
    np.testing.assert_allclose(numeric["b/c"], [[3.0]], rtol=1e-10)


def test_check_function_grads_samples_large_leaves():
    calls = []

    def fn(p):
        calls.append(1)
        return float((p["w"] ** 2).sum())

    params = {"w": np.linspace(-1.0, 1.0, 100)}
    worst = gc.check_function_grads(fn, params, {"w": 2 * params["w"]}, max_entries=5)
    assert worst["w"] <= RTOL
    assert len(calls) == 1 + 4 * 5  # the centre, then four points per sampled entry
    bad = {"w": 2 * params["w"] * (1 + 1e-3)}
    with pytest.raises(gc.GradientCheckError, match=r"5 of 5 checked entries fail"):
        gc.check_function_grads(fn, params, bad, max_entries=5)


def test_check_function_grads_reports_structure_and_dtype():
    params = {"w": np.ones(3)}
    with pytest.raises(gc.GradientCheckError, match=r"misses leaves \['w'\].*unexpected .*\['v'\]"):
        gc.check_function_grads(lambda p: 0.0, params, {"v": np.ones(3)})
    with pytest.raises(gc.GradientCheckError, match=r"w: gradient is shape \(2,\)"):
        gc.check_function_grads(lambda p: 0.0, params, {"w": np.ones(2)})
    with pytest.raises(TypeError, match="float64"):
        gc.check_function_grads(lambda p: 0.0, {"w": np.ones(3, np.float32)}, params)
    with pytest.raises(TypeError, match="float64"):
        gc.check_input_grad(lambda v: 0.0, np.ones(3, np.float32), np.ones(3))


def test_gradient_check_error_is_an_assertion_error():
    assert issubclass(gc.GradientCheckError, AssertionError)
    err = _raises(GradcheckScale(dx_error=0.01))
    assert err.layer == repr(GradcheckScale(dx_error=0.01)) and err.index is not None


def test_seeds_max_entries_and_fn_are_checked_by_gradcheck():
    for seed in (np.zeros(3), {"a": 1}, 1.5, True, "0"):
        with pytest.raises(TypeError, match="seed must be an int >= 0"):
            gc.check_activation("relu", seed=seed)
    with pytest.raises(ValueError, match="seed must be an int >= 0; got -1"):
        gc.check_loss("cross_entropy", (3,), seed=-1)
    for bad in (np.array(1.0), {}, 2.5):
        with pytest.raises(TypeError, match="max_entries must be a positive int"):
            gc.check_layer(pn.Dense(3), 4, max_entries=bad)
    with pytest.raises(ValueError, match="max_entries must be a positive int; got 0"):
        gc.check_input_grad(lambda v: float(v.sum()), np.ones(3), np.ones(3), max_entries=0)
    params = {"w": np.ones(2)}
    for fn in (3, {"w": 1}, np.ones(2)):
        with pytest.raises(TypeError, match="fn must be a function of a params tree"):
            gc.numeric_grads(fn, params)
        with pytest.raises(TypeError, match="fn must be a function of a params tree"):
            gc.check_function_grads(fn, params, params)
    assert gc.check_layer(pn.Dense(3), 4, seed=np.int64(3), max_entries=np.int64(8))


# --------------------------------------------------------------------------- sublayers


def _residual_with(sublayers):
    """A Residual whose ``sublayers`` is replaced (its passes stay right)."""

    @attrs.frozen
    class Misnamed(pn.Residual):
        def sublayers(self, in_shape):
            return sublayers(self, in_shape)

    return Misnamed([pn.Dense(4, "tanh")], shortcut=pn.Dense(4, "tanh"))


def test_check_layer_checks_a_containers_sublayers_against_its_params():
    good = pn.Residual([pn.Dense(4, "tanh")], shortcut=pn.Dense(4, "tanh"))
    gc.check_layer(good, (3,))  # Residual's own sublayers pass
    cases = [
        (
            lambda self, s: (pn.Sublayer(("dense_0",), pn.Dense(5, "tanh"), s),),
            r"the path 'dense_0' names .* but its layer's param_shapes\(\(3,\)\) are",
        ),
        (
            lambda self, s: (pn.Sublayer(("shortcut", "dense_9"), self.shortcut[0], s),),
            r"the path 'shortcut/dense_9' names None in the params init_params made",
        ),
        (
            lambda self, s: [("dense_0", self.layers[0], s)],
            r"item 0 must be a purenn.Sublayer\(path, layer, in_shape\); got \('dense_0'",
        ),
        (
            lambda self, s: (pn.Sublayer(("dense_0",), pn.Conv2D(2, 3), s),),
            r"dense_0 refuses its in_shape \(3,\): .*",
        ),
    ]
    for sublayers, message in cases:
        with pytest.raises(gc.GradientCheckError, match=message) as caught:
            gc.check_layer(_residual_with(sublayers), (3,))
        assert caught.value.check == "sublayers"
