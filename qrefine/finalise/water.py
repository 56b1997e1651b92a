"""Hydrogens on waters, which reduce2 does not place.

Each water gets H1 and H2 (O-H 0.85 A and H-O-H 103.9 deg: the GeoStd HOH
values at X-ray distances, like every other H cctbx places) in the orientation
that makes the most hydrogen bonds to nearby O/N acceptors and the fewest
close contacts, from a deterministic set of trial orientations.
"""

import numpy as np

from qrefine.finalise.residues import append_atom, is_water

WATER_OH = 0.85
WATER_HOH = 103.9
HBOND_MAX = 2.5


def add_water_hydrogens(hierarchy):
    """Add H1, H2 to each water lacking them, pointing at acceptors where possible."""
    atoms = hierarchy.atoms()
    xyz = atoms.extract_xyz().as_numpy_array()
    acceptor = np.array([a.element.strip().upper() in ("O", "N") for a in atoms], dtype=bool)
    hydrogen = np.array([a.element_is_hydrogen() for a in atoms], dtype=bool)
    added = 0
    new_h = []
    for ag in list(hierarchy.atom_groups()):
        if not is_water(ag) or ag.get_atom("O") is None:
            continue
        if ag.get_atom("H1") is not None or ag.get_atom("H2") is not None:
            continue
        o = ag.get_atom("O")
        sites = _orient_water(np.array(o.xyz), o.i_seq, xyz, acceptor, hydrogen,
                              np.array(new_h).reshape(-1, 3))
        for name, site in zip(("H1", "H2"), sites):
            append_atom(ag, name, "H", site, o)
            new_h.append(site)
            added += 1
    hierarchy.atoms().reset_i_seq()
    return added


def _orient_water(o, i_self, xyz, acceptor, hydrogen, extra_h):
    d = np.linalg.norm(xyz - o, axis=1)
    near = np.nonzero((d < 4.0) & (d > 0.1))[0]
    near = near[near != i_self]
    partners = [xyz[i] for i in near if acceptor[i] and d[i] < 3.4]
    directions = [(p - o) / np.linalg.norm(p - o) for p in partners]
    # Fallback directions: a fixed spread, so the result is deterministic.
    directions += [np.array(v, dtype=float) / np.linalg.norm(v) for v in
                   ((1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1))]
    others = np.vstack([xyz[near], extra_h]) if len(extra_h) else xyz[near]
    other_is_h = np.concatenate([hydrogen[near], np.ones(len(extra_h), dtype=bool)])
    other_acc = np.concatenate([acceptor[near], np.zeros(len(extra_h), dtype=bool)])
    best, best_score = None, None
    theta = np.radians(WATER_HOH)
    for u in directions:
        ref = np.cross(u, [1.0, 0.0, 0.0])
        if np.linalg.norm(ref) < 0.1:
            ref = np.cross(u, [0.0, 1.0, 0.0])
        ref /= np.linalg.norm(ref)
        ref2 = np.cross(u, ref)
        for phi in np.radians(np.arange(0, 360, 15)):
            w = np.cos(theta) * u + np.sin(theta) * (np.cos(phi) * ref + np.sin(phi) * ref2)
            h = [o + WATER_OH * u, o + WATER_OH * w]
            score = sum(_water_h_score(hh, o, others, other_is_h, other_acc) for hh in h)
            if best_score is None or score > best_score + 1e-9:
                best, best_score = h, score
    return best


def _water_h_score(h, o, others, other_is_h, other_acc):
    if len(others) == 0:
        return 0.0
    d = np.linalg.norm(others - h, axis=1)
    score = 0.0
    for k in np.nonzero(d < 3.0)[0]:
        if other_is_h[k]:
            score -= max(0.0, 2.0 - d[k]) * 4
        elif other_acc[k] and d[k] <= HBOND_MAX:
            v1, v2 = o - h, others[k] - h
            cos = np.dot(v1, v2) / (np.linalg.norm(v1) * np.linalg.norm(v2))
            if np.degrees(np.arccos(np.clip(cos, -1, 1))) >= 120:
                score += 1.0
        elif not other_acc[k]:
            score -= max(0.0, 2.4 - d[k]) * 4
    return score
