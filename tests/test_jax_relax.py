"""Batched JAX geometry optimization (parafit.engines.jax_relax) against ASE's optimizers.

The model is a small Morse cluster written in JAX; ASE runs it through a calculator that
calls the same function, so both optimizers see the same energy surface and must take
the same steps. Each jitted function below is compiled once for the whole file.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixAtoms
from ase.optimize import BFGS, FIRE, LBFGS

from parafit.engines import relax
from parafit.engines.jax_relax import (
    ANGLE,
    BOND,
    TORSION,
    minimize,
    minimize_many,
    restraint_arrays,
    restraint_energy_and_forces,
)
from parafit.errors import InputError
from parafit.jobs import (
    AngleRestraint,
    BondRestraint,
    GeometryOptimization,
    Job,
    TorsionRestraint,
)

jax.config.update("jax_enable_x64", True)

N = 7  # atoms per structure (padding included)
N_RESTRAINTS = 4  # restraint slots
PARAMS = np.array([0.5, 1.6, 1.2])  # Morse D [eV], a [1/Å], r0 [Å]
PARAMS_B = np.array([0.8, 1.3, 1.4])
KCAL = 23.060548  # kcal/mol per eV
ASE_OPTIMIZERS = {"fire": FIRE, "lbfgs": LBFGS, "bfgs": BFGS}
_I, _J = np.triu_indices(N, 1)


def morse(x: jax.Array, params: jax.Array, present: jax.Array) -> jax.Array:
    """Morse pair energy [eV] of the atoms marked present; padding atoms are ignored."""
    d, a, r0 = params[0], params[1], params[2]
    r = jnp.sqrt(jnp.sum((x[_I] - x[_J]) ** 2, axis=-1))
    e = jnp.exp(-a * (r - r0))
    return jnp.sum(jnp.where(present[_I] & present[_J], d * (e * e - 2.0 * e), 0.0))


_morse_vg = jax.jit(jax.value_and_grad(morse))


class MorseCalculator(Calculator):
    """ASE calculator on the same JAX Morse function (all atoms present)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, params: np.ndarray) -> None:
        super().__init__()
        self.params = params

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = np.zeros((N, 3))
        n = len(self.atoms)
        pos[:n] = self.atoms.positions
        pos[n:] = _far(N - n)
        present = np.arange(N) < n
        e, g = _morse_vg(jnp.asarray(pos), jnp.asarray(self.params), present)
        self.results = {
            "energy": float(e),
            "free_energy": float(e),
            "forces": -np.asarray(g)[:n],
        }


def _far(n: int) -> np.ndarray:
    """Distinct far-away positions for padding atoms [Å]."""
    return np.array([[100.0 + 10.0 * k, 0.0, 0.0] for k in range(n)]).reshape(-1, 3)


def _geometry(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 2.4, (n, 3))


def _pad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) padded positions and the (N,) present mask."""
    n = len(x)
    return np.concatenate([x, _far(N - n)]), np.arange(N) < n


def _relax(params, x0, present, fixed, restraints, fmax, max_steps, unit, method):
    """One relaxation; energy_fn returns eV / unit, converted back by energy_unit."""
    return minimize(
        lambda x: morse(x, params, present) / unit,
        x0,
        fixed=fixed | ~present,
        fmax=fmax,
        max_steps=max_steps,
        method=method,
        restraints=restraints,
        energy_unit=unit,
    )


def _relax_grid(params, x0, present, fixed, restraints, fmax, max_steps, unit, method):
    """(n_params, n_geometries) batch: outer vmap over parameters, inner over geometries."""
    one = functools.partial(_relax, method=method)
    inner = jax.vmap(one, in_axes=(None, 0, 0, 0, 0, None, None, None))
    outer = jax.vmap(inner, in_axes=(0, None, None, None, None, None, None, None))
    return outer(params, x0, present, fixed, restraints, fmax, max_steps, unit)


relax_one = jax.jit(_relax, static_argnames="method")
relax_grid = jax.jit(_relax_grid, static_argnames="method")


def _run(
    params=PARAMS,
    x0=None,
    *,
    present=None,
    fixed=None,
    restraints=None,
    fmax=1e-4,
    max_steps=1000,
    unit=1.0,
    method="lbfgs",
):
    x0 = _geometry(0) if x0 is None else x0
    present = np.ones(N, bool) if present is None else present
    fixed = np.zeros(N, bool) if fixed is None else fixed
    return relax_one(
        params, x0, present, fixed, restraints, fmax, max_steps, unit, method=method
    )


def _ase_run(method, x0, *, params=PARAMS, fixed=(), fmax=1e-4, steps=1000):
    atoms = Atoms(f"H{len(x0)}", positions=x0)
    atoms.calc = MorseCalculator(params)
    if len(fixed):
        atoms.set_constraint(FixAtoms(indices=list(fixed)))
    opt = ASE_OPTIMIZERS[method](atoms, logfile=None, trajectory=None)
    converged = opt.run(fmax=fmax, steps=steps)
    return atoms, bool(converged), int(opt.nsteps)


@pytest.mark.parametrize("method", ["fire", "lbfgs", "bfgs"])
def test_matches_ase_optimizer_step_for_step(method: str) -> None:
    x0 = _geometry(0)
    atoms, converged, n_steps = _ase_run(method, x0)
    out = _run(x0=x0, method=method)
    assert converged and bool(out.converged)
    assert int(out.n_steps) == n_steps
    np.testing.assert_allclose(out.positions, atoms.positions, atol=1e-8)
    assert float(out.energy) == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(out.forces, atoms.get_forces(), atol=1e-8)
    assert float(out.max_force) < 1e-4
    # energy_fn in kcal/mol with energy_unit 1/KCAL: same path, energies reported in eV
    kcal = _run(x0=x0, method=method, unit=1.0 / KCAL)
    assert int(kcal.n_steps) == n_steps
    np.testing.assert_allclose(kcal.positions, out.positions, atol=1e-8)
    assert float(kcal.energy) == pytest.approx(float(out.energy), abs=1e-9)


@pytest.mark.parametrize("method", ["fire", "lbfgs", "bfgs"])
def test_fixed_atoms_stay_put_as_with_ase_fixatoms(method: str) -> None:
    x0 = _geometry(1)
    fixed = np.zeros(N, bool)
    fixed[[0, 3]] = True
    atoms, converged, n_steps = _ase_run(method, x0, fixed=[0, 3])
    out = _run(x0=x0, fixed=fixed, method=method)
    assert converged and bool(out.converged)
    assert int(out.n_steps) == n_steps
    np.testing.assert_array_equal(np.asarray(out.positions)[fixed], x0[fixed])
    np.testing.assert_allclose(out.positions, atoms.positions, atol=1e-8)
    # reported forces are the model's, not zeroed on fixed atoms (apply_constraint=False)
    np.testing.assert_allclose(
        out.forces, atoms.get_forces(apply_constraint=False), atol=1e-8
    )
    assert np.linalg.norm(np.asarray(out.forces)[0]) > 1e-3


def test_vmap_over_geometries_and_parameters_equals_unbatched_runs() -> None:
    # 4 structures (two of 5 atoms padded to 7, one with a fixed atom), 2 parameter sets
    geoms, present, fixed = [], [], []
    for seed, n in ((0, N), (1, 5), (2, N), (3, 5)):
        x, p = _pad(_geometry(seed, n))
        geoms.append(x)
        present.append(p)
        fixed.append(np.arange(N) == (2 if seed == 2 else -1))
    geoms, present, fixed = np.array(geoms), np.array(present), np.array(fixed)
    params = np.array([PARAMS, PARAMS_B])
    out = relax_grid(
        params, geoms, present, fixed, None, 1e-4, 1000, 1.0, method="lbfgs"
    )
    assert out.positions.shape == (2, 4, N, 3) and out.n_steps.shape == (2, 4)
    assert bool(np.all(out.converged))
    assert len(set(np.asarray(out.n_steps).ravel().tolist())) > 1  # different stops
    for i, p in enumerate(params):
        for j in range(4):
            one = _run(p, geoms[j], present=present[j], fixed=fixed[j])
            assert int(out.n_steps[i, j]) == int(one.n_steps)
            np.testing.assert_allclose(out.positions[i, j], one.positions, atol=1e-10)
            assert float(out.energy[i, j]) == pytest.approx(
                float(one.energy), abs=1e-10
            )
            np.testing.assert_array_equal(
                np.asarray(out.positions[i, j])[~present[j]], geoms[j][~present[j]]
            )
    # a padded member equals ASE on the unpadded structure
    atoms, _, n_steps = _ase_run("lbfgs", _geometry(1, 5), params=PARAMS_B)
    assert int(out.n_steps[1, 1]) == n_steps
    np.testing.assert_allclose(out.positions[1, 1, :5], atoms.positions, atol=1e-8)


@pytest.mark.parametrize("method", ["fire", "lbfgs", "bfgs"])
def test_minimize_many_gives_each_member_its_own_relaxation(method: str) -> None:
    """Members relaxed together, with one energy function of all of them, take the
    steps each takes alone: own fmax, step cap, fixed atoms and restraints."""
    geoms, present, fixed = [], [], []
    for seed, n in ((0, N), (1, 5), (2, N), (3, 6)):
        x, p = _pad(_geometry(seed, n))
        geoms.append(x)
        present.append(p)
        fixed.append(np.arange(N) == (2 if seed == 2 else -1))
    geoms, present, fixed = np.array(geoms), np.array(present), np.array(fixed)
    fmax = np.array([1e-4, 1e-3, 1e-4, 1e-4])
    max_steps = np.array([1000, 1000, 1000, 7])
    cases = _restraint_cases()
    restraints = [
        restraint_arrays(cases[0][1] if k == 2 else (), N_RESTRAINTS) for k in range(4)
    ]
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *restraints)

    def energies(x: jax.Array) -> jax.Array:  # (4,) eV / KCAL
        return jax.vmap(lambda xs, p: morse(xs, PARAMS, p))(x, present) / KCAL

    out = jax.jit(
        lambda x: minimize_many(
            energies,
            x,
            fixed=fixed | ~present,
            fmax=fmax,
            max_steps=max_steps,
            method=method,
            restraints=stacked,
            energy_unit=KCAL,
        )
    )(geoms)
    assert out.positions.shape == (4, N, 3) and out.n_steps.shape == (4,)
    assert len(set(np.asarray(out.n_steps).tolist())) > 1
    assert int(out.n_steps[3]) == 7 and not bool(out.converged[3])
    for k in range(4):
        one = minimize(
            lambda x, k=k: morse(x, PARAMS, present[k]) / KCAL,
            geoms[k],
            fixed=fixed[k] | ~present[k],
            fmax=fmax[k],
            max_steps=int(max_steps[k]),
            method=method,
            restraints=restraints[k],
            energy_unit=KCAL,
        )
        assert int(out.n_steps[k]) == int(one.n_steps)
        assert bool(out.converged[k]) == bool(one.converged)
        np.testing.assert_allclose(out.positions[k], one.positions, atol=1e-10)
        assert float(out.energy[k]) == pytest.approx(float(one.energy), abs=1e-10)
        np.testing.assert_allclose(out.forces[k], one.forces, atol=1e-10)
    with pytest.raises(InputError, match="energies"):
        minimize_many(lambda x: jnp.sum(x), geoms)
    with pytest.raises(InputError, match="positions0"):
        minimize_many(energies, geoms[0])


def test_not_converged_within_max_steps_is_reported() -> None:
    x0 = _geometry(0)
    atoms, converged, n_steps = _ase_run("fire", x0, steps=5)
    out = _run(x0=x0, method="fire", max_steps=5)
    assert not converged and n_steps == 5
    assert not bool(out.converged) and int(out.n_steps) == 5
    assert float(out.max_force) >= 1e-4
    np.testing.assert_allclose(out.positions, atoms.positions, atol=1e-10)
    # no step at all: the start geometry, evaluated
    zero = _run(x0=x0, method="fire", max_steps=0)
    assert int(zero.n_steps) == 0 and not bool(zero.converged)
    np.testing.assert_array_equal(zero.positions, x0)
    assert np.isfinite(float(zero.energy))


def test_non_finite_energy_stops_the_loop() -> None:
    bad = np.array([0.5, np.nan, 1.2])
    out = _run(bad, method="fire")
    assert not bool(out.converged) and int(out.n_steps) == 0
    assert np.isnan(float(out.energy))
    # in a batch the bad member stops at once and the good one is unaffected
    x0 = _geometry(0)
    grid = relax_grid(
        np.array([PARAMS, bad]),
        np.stack([x0] * 4),
        np.ones((4, N), bool),
        np.zeros((4, N), bool),
        None,
        1e-4,
        1000,
        1.0,
        method="lbfgs",
    )
    good = _run(x0=x0)
    np.testing.assert_array_equal(grid.n_steps[0], int(good.n_steps))
    np.testing.assert_allclose(grid.positions[0, 0], good.positions, atol=1e-10)
    np.testing.assert_array_equal(grid.n_steps[1], 0)
    assert not np.any(grid.converged[1]) and np.all(np.isnan(grid.energy[1]))


def test_energy_turning_nan_midway_stops_the_loop() -> None:
    def energy(x: jax.Array) -> jax.Array:  # pulled towards 1, NaN beyond x[0, 0] = 0.5
        return jnp.where(x[0, 0] > 0.5, jnp.nan, jnp.sum((x - 1.0) ** 2))

    out = jax.jit(lambda x: minimize(energy, x, method="fire", max_steps=10**6))(
        np.zeros((2, 3))
    )
    assert not bool(out.converged)
    assert 0 < int(out.n_steps) < 100
    assert np.isnan(float(out.energy)) and float(out.positions[0, 0]) > 0.5


# ---- restraints ----------------------------------------------------------------------


def _restraint_cases() -> list[tuple[np.ndarray, list]]:
    """Random geometries with bond, angle and torsion restraints, torsions near ±180°."""
    rng = np.random.default_rng(7)
    cases = []
    for trial in range(6):
        x = rng.normal(0.0, 1.2, (N, 3))
        if trial >= 3:  # make the torsion 1-2-3-4 close to ±180 degrees
            x[2:5] = x[1] + np.array(
                [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 1.0, 0.0]]
            )
            x[5] = x[4] + np.array([1.0, -1.0, 0.02 * (trial - 4)])
        atoms = Atoms(f"H{N}", positions=x)
        phi = atoms.get_dihedral(2, 3, 4, 5)
        restraints = [
            BondRestraint(0, 1, target=1.5, force_constant=2.0),
            AngleRestraint(0, 2, 1, target=100.0, force_constant=0.7),
            TorsionRestraint(
                2, 3, 4, 5, target=179.0 if trial % 2 else -179.5, force_constant=0.4
            ),
            TorsionRestraint(0, 1, 2, 3, target=phi + 20.0, force_constant=1.1),
        ]
        cases.append((x, restraints))
    return cases


_restraint_jit = jax.jit(restraint_energy_and_forces)


def test_restraint_energy_and_forces_match_relax() -> None:
    for x, restraints in _restraint_cases():
        e_ref, f_ref, _ = relax.restraint_energy_and_forces(
            restraints, Atoms(f"H{N}", positions=x)
        )
        e, f = _restraint_jit(x, restraint_arrays(restraints, N_RESTRAINTS))
        assert float(e) == pytest.approx(e_ref, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(f, f_ref, rtol=1e-9, atol=1e-10)
        # one restraint at a time, in any slot, padded with unused slots
        for r in restraints:
            e1_ref, f1_ref, _ = relax.restraint_energy_and_forces(
                [r], Atoms(f"H{N}", positions=x)
            )
            e1, f1 = _restraint_jit(x, restraint_arrays([r], N_RESTRAINTS))
            assert float(e1) == pytest.approx(e1_ref, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(f1, f1_ref, rtol=1e-9, atol=1e-10)


def test_restraints_degenerate_geometries_give_finite_forces() -> None:
    x = np.zeros((N, 3))
    x[:, 0] = np.arange(N)  # all atoms on a line: angles 180, torsions undefined
    restraints = [
        AngleRestraint(0, 1, 2, target=90.0, force_constant=1.0),
        TorsionRestraint(0, 1, 2, 3, target=60.0, force_constant=1.0),
        BondRestraint(4, 5, target=2.0, force_constant=1.0),
    ]
    e_ref, f_ref, _ = relax.restraint_energy_and_forces(
        restraints, Atoms(f"H{N}", positions=x)
    )
    e, f = _restraint_jit(x, restraint_arrays(restraints, N_RESTRAINTS))
    assert float(e) == pytest.approx(e_ref, abs=1e-12)
    assert np.all(np.isfinite(f))
    np.testing.assert_allclose(f, f_ref, atol=1e-6)


def test_restraint_arrays_layout_and_shifts() -> None:
    restraints = [
        TorsionRestraint(0, 1, 2, 3, target=-90.0, force_constant=1.0),
        BondRestraint(4, 5, target=2.0, force_constant=3.0),
        AngleRestraint(1, 2, 3, target=120.0, force_constant=0.5),
    ]
    ra = restraint_arrays(restraints, 5)
    np.testing.assert_array_equal(ra.kind[:3], [TORSION, BOND, ANGLE])
    np.testing.assert_array_equal(ra.mask, [True, True, True, False, False])
    np.testing.assert_array_equal(ra.atoms[1], [4, 5, 0, 0])
    np.testing.assert_allclose(ra.target[:3], [-math.pi / 2, 2.0, 2 * math.pi / 3])
    # an image shift moves the bond's second atom: distance 1 -> 1 + 3
    x = np.zeros((N, 3))
    x[5, 0] = 1.0
    shifts = np.zeros((1, 4, 3))
    shifts[0, 1, 0] = 3.0
    e, _ = _restraint_jit(x, restraint_arrays([restraints[1]], N_RESTRAINTS))
    e_shift, f_shift = _restraint_jit(
        x, restraint_arrays([restraints[1]], N_RESTRAINTS, shifts=shifts)
    )
    assert float(e) == pytest.approx(0.5 * 3.0 * 1.0**2)
    assert float(e_shift) == pytest.approx(0.5 * 3.0 * 2.0**2)
    assert float(f_shift[5, 0]) == pytest.approx(-3.0 * 2.0)
    with pytest.raises(InputError, match="n_max"):
        restraint_arrays(restraints, 2)
    with pytest.raises(InputError, match="shape"):
        restraint_arrays(restraints, 5, shifts=np.zeros((3, 3)))


def test_restrained_relaxation_matches_run_job() -> None:
    x0 = _geometry(4)
    atoms0 = Atoms(f"H{N}", positions=x0)
    restraints = (
        BondRestraint(0, 1, target=1.9, force_constant=5.0),
        AngleRestraint(0, 2, 1, target=75.0, force_constant=2.0),
        TorsionRestraint(
            0,
            1,
            2,
            3,
            target=atoms0.get_dihedral(0, 1, 2, 3) + 30.0,
            force_constant=1.5,
        ),
    )
    task = GeometryOptimization(
        optimizer="lbfgs", max_iterations=1000, fmax=1e-4, restraints=restraints
    )
    ref = relax.run_job(Job("r", atoms0, task), MorseCalculator(PARAMS))
    assert int(ref.status[0]) == 0
    out = _run(x0=x0, restraints=restraint_arrays(restraints, N_RESTRAINTS))
    assert bool(out.converged)
    assert int(out.n_steps) == int(ref.n_steps[0])
    np.testing.assert_allclose(out.positions, ref.positions[0], atol=1e-7)
    # reported energy and forces are the model's, without the restraints
    assert float(out.energy) == pytest.approx(float(ref.energy[0]), abs=1e-9)
    np.testing.assert_allclose(out.forces, ref.forces[0], atol=1e-7)
    # the restraints hold the structure away from the model's minimum
    assert np.abs(np.asarray(out.forces)).max() > 1e-2
    d = np.linalg.norm(np.asarray(out.positions[1] - out.positions[0]))
    assert abs(d - 1.9) < 0.5


def test_bad_arguments_raise_input_error() -> None:
    x0 = _geometry(0)
    with pytest.raises(InputError, match="method"):
        minimize(lambda x: jnp.sum(x**2), x0, method="bfgslinesearch")
    with pytest.raises(InputError, match="fixed"):
        minimize(lambda x: jnp.sum(x**2), x0, fixed=np.zeros(3, bool))
    with pytest.raises(InputError, match="positions0"):
        minimize(lambda x: jnp.sum(x**2), x0.ravel())
    with pytest.raises(InputError, match="scalar"):
        minimize(lambda x: x**2, x0)
