"""Optimizers: convergence, hand-written float64 references, state, purity, errors."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

import purenn
from purenn import optim
from purenn import schedules as S

# --------------------------------------------------------------------------- fixtures

SHAPES = {"a": {"w": (3, 2), "b": (2,)}, "c": {"w": (4,)}}


def make_tree(rng: np.random.Generator, dtype=np.float64) -> dict:
    return {
        layer: {k: rng.normal(size=shape).astype(dtype) for k, shape in leaves.items()}
        for layer, leaves in SHAPES.items()
    }


def flat(tree: dict) -> np.ndarray:
    return np.concatenate([leaf.ravel() for leaf in purenn.tree_leaves(tree)])


def unflat(vector: np.ndarray, like: dict) -> dict:
    out, i = {}, 0
    for path, leaf in purenn.tree_items(like):
        layer, key = path.split("/")
        out.setdefault(layer, {})[key] = vector[i : i + leaf.size].reshape(leaf.shape)
        i += leaf.size
    return out


def small_network(dtype=np.float32):
    spec = purenn.Network(5, [purenn.Dense(7), purenn.Dropout(0.2), purenn.Dense(3, "softmax")])
    params = purenn.init(spec, rng=1, dtype=dtype)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 5)).astype(dtype)
    y = rng.integers(0, 3, size=16)
    return params, x, y


ALL = {
    "sgd": optim.sgd(0.1),
    "momentum": optim.sgd(0.05, momentum=0.9),
    "nesterov": optim.sgd(0.05, momentum=0.9, nesterov=True),
    # RMSprop's step has size ~lr whatever the gradient: it needs a decaying lr to settle
    "rmsprop": optim.rmsprop(S.ExponentialDecay(0.02, 0.1, 400)),
    "rmsprop_momentum": optim.rmsprop(S.ExponentialDecay(0.01, 0.1, 400), momentum=0.5),
    "adam": optim.adam(0.05),
    "adamw": optim.adamw(0.05, weight_decay=0.0),
    "clipped_sgd": optim.sgd(0.1, clip_norm=0.5),
}


# --------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("name", sorted(ALL))
def test_each_optimizer_converges_on_a_quadratic(name):
    """f(p) = 1/2 sum a (p - c)^2, ill-conditioned (a from 0.5 to 4)."""
    opt = ALL[name]
    rng = np.random.default_rng(0)
    params, target = make_tree(rng), make_tree(rng)
    curv = purenn.tree_map(lambda p: rng.uniform(0.5, 4.0, size=p.shape), params)
    state = opt.init(params)
    for _ in range(1500):
        g = purenn.tree_map(lambda p, c, a: a * (p - c), params, target, curv)
        params, state = opt.update(g, state, params)
    err = np.abs(flat(params) - flat(target)).max()
    assert err < 1e-3, f"{name}: max |p - c| = {err}"


def test_l2_weight_decay_converges_to_the_regularised_minimum():
    """With L2, the minimum of 1/2 a (p - c)^2 + wd/2 p^2 is a c / (a + wd)."""
    rng = np.random.default_rng(3)
    params, target = make_tree(rng), make_tree(rng)
    wd = 0.5
    for opt in (optim.sgd(0.1, weight_decay=wd), optim.adam(0.02, weight_decay=wd)):
        p, state = params, opt.init(params)
        for _ in range(3000):
            p, state = opt.update(purenn.tree_map(lambda q, c: q - c, p, target), state, p)
        want = flat(target) / (1.0 + wd)
        np.testing.assert_allclose(flat(p), want, atol=1e-4, err_msg=repr(opt))


# --------------------------------------------------------------------------- references

N_STEPS = 50


def fixed_gradients(seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=12) * (1.0 + 3.0 * (t % 7 == 0)) for t in range(N_STEPS)]


def run_ours(opt, p0: np.ndarray, gs: list[np.ndarray]) -> np.ndarray:
    like = unflat(p0, {k: {j: np.zeros(s) for j, s in v.items()} for k, v in SHAPES.items()})
    params, state = like, opt.init(like)
    for g in gs:
        params, state = opt.update(unflat(g, like), state, params)
    assert state.count == len(gs)
    return flat(params)


# The references below are deliberately plain: one flat vector, one loop, the
# textbook equations, no shared code with purenn.optim.


def ref_sgd(p, gs, lr, momentum=0.0, nesterov=False, wd=0.0, clip=None, lr_fn=None):
    p = p.copy()
    v = np.zeros_like(p)
    for t, g in enumerate(gs):
        if clip is not None:
            norm = math.sqrt(sum(float(gi) ** 2 for gi in g))
            if norm > clip:
                g = g * (clip / norm)
        g = g + wd * p
        rate = lr_fn(t) if lr_fn else lr
        if momentum == 0.0:
            p = p - rate * g
            continue
        v = momentum * v + g
        step = g + momentum * v if nesterov else v
        p = p - rate * step
    return p


def ref_rmsprop(p, gs, lr, rho=0.9, eps=1e-8, momentum=0.0, wd=0.0):
    p = p.copy()
    s = np.zeros_like(p)
    buf = np.zeros_like(p)
    for g in gs:
        g = g + wd * p
        s = rho * s + (1 - rho) * g**2
        step = g / (np.sqrt(s) + eps)
        if momentum:
            buf = momentum * buf + step
            step = buf
        p = p - lr * step
    return p


def ref_adam(p, gs, lr, b1=0.9, b2=0.999, eps=1e-8, l2=0.0, decoupled=0.0, lr_fn=None):
    p = p.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for i, g in enumerate(gs):
        t = i + 1
        rate = lr_fn(i) if lr_fn else lr
        g = g + l2 * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p = p - rate * (m_hat / (np.sqrt(v_hat) + eps) + decoupled * p)
    return p


def warm_cosine(t: int) -> float:
    if t < 10:
        return 0.02 * t / 10
    s = min(t - 10, 30) / 30
    return 0.001 + (0.02 - 0.001) * 0.5 * (1 + math.cos(math.pi * s))


CASES = {
    "sgd": (optim.sgd(0.03), lambda p, g: ref_sgd(p, g, 0.03)),
    "sgd_momentum": (
        optim.sgd(0.03, momentum=0.9),
        lambda p, g: ref_sgd(p, g, 0.03, momentum=0.9),
    ),
    "sgd_nesterov_l2": (
        optim.sgd(0.03, momentum=0.8, nesterov=True, weight_decay=0.1),
        lambda p, g: ref_sgd(p, g, 0.03, momentum=0.8, nesterov=True, wd=0.1),
    ),
    "sgd_clip": (
        optim.sgd(0.03, momentum=0.5, clip_norm=2.5),
        lambda p, g: ref_sgd(p, g, 0.03, momentum=0.5, clip=2.5),
    ),
    "sgd_schedule": (
        optim.sgd(S.LinearWarmup(S.CosineDecay(0.02, 30, 0.001), 10)),
        lambda p, g: ref_sgd(p, g, None, lr_fn=warm_cosine),
    ),
    "rmsprop": (optim.rmsprop(0.01), lambda p, g: ref_rmsprop(p, g, 0.01)),
    "rmsprop_all": (
        optim.rmsprop(0.01, rho=0.8, eps=1e-6, momentum=0.7, weight_decay=0.05),
        lambda p, g: ref_rmsprop(p, g, 0.01, rho=0.8, eps=1e-6, momentum=0.7, wd=0.05),
    ),
    "adam": (optim.adam(0.01), lambda p, g: ref_adam(p, g, 0.01)),
    "adam_l2": (
        optim.adam(0.01, b1=0.8, b2=0.99, eps=1e-7, weight_decay=0.1),
        lambda p, g: ref_adam(p, g, 0.01, b1=0.8, b2=0.99, eps=1e-7, l2=0.1),
    ),
    "adamw": (
        optim.adamw(0.01, weight_decay=0.1),
        lambda p, g: ref_adam(p, g, 0.01, decoupled=0.1),
    ),
    "adamw_schedule": (
        optim.adamw(S.ExponentialDecay(0.02, 0.5, 20), weight_decay=0.05),
        lambda p, g: ref_adam(p, g, None, decoupled=0.05, lr_fn=lambda t: 0.02 * 0.5 ** (t / 20)),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fifty_steps_match_a_hand_written_reference(name):
    opt, reference = CASES[name]
    p0 = np.random.default_rng(5).normal(size=12)
    gs = fixed_gradients()
    ours, want = run_ours(opt, p0, gs), reference(p0, gs)
    worst = np.abs(ours - want).max()
    assert worst < 1e-12, f"{name}: worst |ours - reference| = {worst}\nours {ours}\nref  {want}"
    assert not np.array_equal(ours, p0)


def test_sgd_without_momentum_is_bit_identical_to_sgd_step():
    for dtype in (np.float32, np.float64):
        params, x, y = small_network(dtype)
        opt = optim.sgd(0.3)
        ours, state, theirs = params, opt.init(params), params
        rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
        for _ in range(5):
            ours, state = opt.update(purenn.grads(ours, x, y, rng=rng_a), state, ours)
            theirs = purenn.sgd_step(theirs, purenn.grads(theirs, x, y, rng=rng_b), 0.3)
        assert purenn.tree_equal(ours, theirs)
        assert state.momentum is None and state.count == 5


# --------------------------------------------------------------------------- state and purity


@pytest.mark.parametrize("name", sorted(ALL))
def test_state_structure_and_dtypes_survive_updates(name):
    opt = ALL[name]
    params, x, y = small_network(np.float32)
    state = opt.init(params)
    moments0 = {f: getattr(state, f) for f in ("momentum", "mu", "nu") if hasattr(state, f)}
    for step in range(3):
        g = purenn.grads(params, x, y, rng=step)
        params, state = opt.update(g, state, params)
    assert state.count == 3
    assert type(state) is type(opt.init(params))
    purenn.tree_check_like(params, purenn.init(params["spec"], 0), "params")  # float32 kept
    for field, tree0 in moments0.items():
        tree = getattr(state, field)
        if tree0 is None:
            assert tree is None
            continue
        assert tree["spec"] is params["spec"]
        purenn.tree_check_like(tree, params, f"state.{field}")
        assert not purenn.tree_equal(tree, tree0)


@pytest.mark.parametrize("name", sorted(ALL))
def test_read_only_inputs_work_and_are_left_unchanged(name):
    opt = ALL[name]
    params, x, y = small_network(np.float64)
    state = opt.init(params)
    params, state = opt.update(purenn.grads(params, x, y, rng=0), state, params)  # non-zero moments
    grads = purenn.grads(params, x, y, rng=1)
    trees = [params, grads] + [
        getattr(state, f) for f in ("momentum", "mu", "nu") if getattr(state, f, None) is not None
    ]
    copies = [purenn.tree_map(np.copy, t) for t in trees]
    for tree in trees:
        for leaf in purenn.tree_leaves(tree):
            leaf.flags.writeable = False
    new_params, new_state = opt.update(grads, state, params)
    for tree, copy in zip(trees, copies, strict=True):
        assert purenn.tree_equal(tree, copy)
    assert new_state.count == state.count + 1
    assert not purenn.tree_equal(new_params, params)


def test_update_is_deterministic():
    params, x, y = small_network()
    g = purenn.grads(params, x, y, rng=0)
    opt = optim.adam(0.01)
    a = opt.update(g, opt.init(params), params)
    b = opt.update(g, opt.init(params), params)
    assert purenn.tree_equal(a[0], b[0]) and purenn.tree_equal(a[1].nu, b[1].nu)


def test_float32_stays_float32_with_numpy_scalar_hyperparameters():
    params, x, y = small_network(np.float32)
    g = purenn.grads(params, x, y, rng=0)
    opt = optim.adam(np.float64(0.01), b1=np.float64(0.9), weight_decay=np.float32(0.1))
    new, state = opt.update(g, opt.init(params), params)
    assert {leaf.dtype for leaf in purenn.tree_leaves(new)} == {np.dtype(np.float32)}
    assert {leaf.dtype for leaf in purenn.tree_leaves(state.nu)} == {np.dtype(np.float32)}
    assert isinstance(opt.lr, float) and type(opt.b1) is float


def test_optimizers_are_immutable_comparable_values():
    assert optim.sgd(0.1, momentum=0.9) == optim.sgd(0.1, momentum=0.9)
    assert hash(optim.adam(1e-3)) == hash(optim.adam(1e-3))
    assert optim.adamw().decoupled_weight_decay and not optim.adam().decoupled_weight_decay
    with pytest.raises(AttributeError):
        optim.sgd(0.1).lr = 0.2  # type: ignore[misc]


# --------------------------------------------------------------------------- clipping


def test_clip_by_global_norm():
    rng = np.random.default_rng(4)
    g = make_tree(rng)
    norm = optim.global_norm(g)
    assert norm == pytest.approx(np.linalg.norm(flat(g)), rel=1e-14)
    assert optim.clip_by_global_norm(g, norm * 2) is g  # within bound: untouched
    clipped = optim.clip_by_global_norm(g, norm / 4)
    assert optim.global_norm(clipped) == pytest.approx(norm / 4, rel=1e-12)
    np.testing.assert_allclose(flat(clipped), flat(g) / 4, rtol=1e-12)
    g32 = purenn.tree_map(lambda a: a.astype(np.float32), g)
    assert {a.dtype for a in purenn.tree_leaves(optim.clip_by_global_norm(g32, 0.1))} == {
        np.dtype(np.float32)
    }


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: optim.sgd(-0.1), ValueError, "SGD.lr must be a finite float >= 0; got -0.1"),
        (lambda: optim.sgd(float("nan")), ValueError, "SGD.lr must be .* got nan"),
        (lambda: optim.sgd("0.1"), TypeError, "lr must be a float or a schedule"),
        (lambda: optim.sgd(True), TypeError, "lr must be a float"),
        (lambda: optim.sgd(0.1, momentum=1.0), ValueError, r"SGD.momentum must be .*\[0, 1\)"),
        (lambda: optim.sgd(0.1, nesterov=True), ValueError, "nesterov=True needs momentum"),
        (lambda: optim.sgd(0.1, nesterov=1), TypeError, "True or False"),
        (lambda: optim.sgd(0.1, weight_decay=-1), ValueError, "SGD.weight_decay must be .* >= 0"),
        (lambda: optim.adam(b2=1.5), ValueError, r"Adam.b2 must be a float in \[0, 1\); got 1.5"),
        (lambda: optim.adam(clip_norm=0), ValueError, "Adam.clip_norm must be .* or None"),
        (lambda: optim.rmsprop(eps=-1e-8), ValueError, "RMSprop.eps must be a finite float > 0"),
        (lambda: optim.adam(eps=0.0), ValueError, "Adam.eps must be a finite float > 0; got 0.0"),
    ],
)
def test_bad_hyperparameters_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_update_refuses_mismatched_inputs_with_clear_errors():
    params, x, y = small_network()
    g = purenn.grads(params, x, y, rng=0)
    adam, sgd = optim.adam(), optim.sgd(0.1, momentum=0.9)
    with pytest.raises(TypeError, match="expects a AdamState"):
        adam.update(g, sgd.init(params), params)
    with pytest.raises(ValueError, match="grads"):
        adam.update({k: v for k, v in g.items() if k != "dense_1"}, adam.init(params), params)
    g64 = purenn.tree_map(lambda a: a.astype(np.float64), g)
    with pytest.raises(ValueError, match="dtype"):
        adam.update(g64, adam.init(params), params)
    with pytest.raises(ValueError, match=r"state.momentum is None"):
        sgd.update(g, optim.sgd(0.1).init(params), params)
    with pytest.raises(ValueError, match="does not use it"):
        optim.sgd(0.1).update(g, sgd.init(params), params)
    with pytest.raises(TypeError, match="float NumPy array"):
        adam.init({"a": {"w": [1.0, 2.0]}})


def test_a_bad_schedule_value_is_reported_with_its_step():
    params, x, y = small_network()
    g = purenn.grads(params, x, y, rng=0)
    opt = optim.sgd(lambda step: -1.0 if step == 1 else 0.1)
    p, state = opt.update(g, opt.init(params), params)
    with pytest.raises(ValueError, match=r"returned -1\.0 at step 1"):
        opt.update(g, state, p)
    assert optim.sgd(S.StepDecay(0.1, 2)).learning_rate(5) == pytest.approx(0.001)


# --------------------------------------------------------------------------- state validation


@pytest.mark.parametrize("cls", [optim.SGDState, optim.RMSpropState, optim.AdamState])
@pytest.mark.parametrize(
    "count, error", [("abc", TypeError), (1.0, TypeError), (True, TypeError), (-1, ValueError)]
)
def test_a_state_count_must_be_an_int_at_least_0(cls, count, error):
    with pytest.raises(error, match=rf"{cls.__name__}\.count must be an int >= 0"):
        cls(count=count)
    assert cls(count=np.int64(3)).count == 3
    assert type(cls(count=np.int64(3)).count) is int


@pytest.mark.parametrize("make", [optim.adam, optim.rmsprop])
@pytest.mark.parametrize("bad", [-1e-3, np.nan])
def test_negative_or_nan_second_moments_are_refused(make, bad):
    params, _, _ = small_network()
    opt = make(1e-3)
    state = opt.init(params)
    nu = purenn.tree_map(lambda a: a.copy(), state.nu)
    nu["dense_1"]["b"][1] = bad
    with pytest.raises(
        ValueError, match=r"\.nu\['dense_1/b'\] holds .*otherwise the state is corrupt"
    ):
        attrs.evolve(state, nu=nu)
    with pytest.raises(ValueError, match=r"nu\['dense_1/b'\] holds"):
        type(state)(**{**attrs.asdict(state, recurse=False), "nu": nu})


@pytest.mark.parametrize(
    "opt", [optim.adam(), optim.adamw(), optim.rmsprop(), optim.rmsprop(momentum=0.9)]
)
def test_nan_gradients_are_refused_where_the_second_moment_is_made(opt):
    """Documented (docs/training.md): update builds its new state through the
    record's validators like any caller, so NaN in the gradients, which makes
    NaN in ``nu``, is a ValueError naming the leaf; nothing is returned and
    no input changes. (SGD has no second moment and passes NaN on.)"""
    params, x, y = small_network()
    g = purenn.grads(params, x, y, rng=0)
    g["dense_0"]["w"][2, 3] = np.nan
    state = opt.update(purenn.grads(params, x, y, rng=1), opt.init(params), params)[1]
    before = purenn.tree_map(lambda a: a.copy(), state.nu)
    with pytest.raises(ValueError, match=r"State\.nu\['dense_0/w'\] holds nan.*gradients held NaN"):
        opt.update(g, state, params)
    assert purenn.tree_equal(state.nu, before)
    new, _ = optim.sgd(0.1).update(g, optim.sgd(0.1).init(params), params)
    assert np.isnan(new["dense_0"]["w"][2, 3]) and np.isfinite(new["dense_1"]["w"]).all()


def test_moments_of_the_wrong_kind_shape_or_dtype_are_refused_by_update():
    params, x, y = small_network()
    g = purenn.grads(params, x, y, rng=0)
    opt = optim.adam()
    state = opt.init(params)
    with pytest.raises(TypeError, match=r"AdamState\.mu must be a tree like params"):
        optim.AdamState(count=0, mu=[1.0], nu=state.nu)
    narrow = {**state.mu, "dense_0": {**state.mu["dense_0"], "b": np.zeros(2, np.float32)}}
    with pytest.raises(ValueError, match=r"state\.mu\['dense_0/b'\] should have shape \(7,\)"):
        opt.update(g, attrs.evolve(state, mu=narrow), params)
    wide = purenn.tree_map(lambda a: a.astype(np.float64), state.nu)
    match = r"state\.nu\['dense_0/w'\] should have shape \(5, 7\) and dtype float32"
    with pytest.raises(ValueError, match=match):
        opt.update(g, attrs.evolve(state, nu=wide), params)


def test_update_refuses_params_that_do_not_match_their_spec():
    params, x, y = small_network()
    g = purenn.grads(params, x, y, rng=0)
    opt = optim.adam()
    state = opt.init(params)
    bad = {**params, "dense_1": {**params["dense_1"], "b": np.zeros(1, np.float32)}}
    match = r"params\['dense_1'\]\['b'\] has shape \(1,\) but the spec"
    with pytest.raises(ValueError, match=match):
        opt.update(g, state, bad)
    match = r"float NumPy array \(float32 or float64\); got ndarray of dtype float16"
    with pytest.raises(TypeError, match=match):
        opt.init({"a": {"w": np.ones(2, np.float16)}})
    with pytest.raises(ValueError, match="params mix dtypes"):
        opt.init({"a": np.ones(2, np.float32), "b": np.ones(2, np.float64)})


def test_norms_refuse_leaves_that_are_not_float_arrays():
    for tree, what in (
        ({"a": 1}, "int"),
        ({"a": 1.5}, "float"),
        ({"a": np.array(["x"])}, "dtype <U1"),
        ({"a": np.ones(2, complex)}, "dtype complex128"),
        ({"b": {"w": np.ones(2, np.int64)}}, "dtype int64"),
    ):
        with pytest.raises(TypeError, match=f"leaf '.*' is {what}"):
            optim.global_norm(tree)
        with pytest.raises(TypeError, match="grads must hold float arrays"):
            optim.clip_by_global_norm(tree, 0.5)
