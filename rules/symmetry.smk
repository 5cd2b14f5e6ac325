"""Symmetry expansion (`symmetry: Cn | Dn`; C1 = off): every per-particle table that the
training and landscape read (import/{all,even,odd,particles}.csv, junk/{half}.csv) gets a
copy under symmetry/ with one row per (particle, symmetry copy), the poses composed with
the operators as relion_particle_symmetry_expand does (gmmscape.symmetry). The training
rules then read these tables and free only the Gaussians of one asymmetric unit
(`asu_mask`, else derived from the neutral GMM).

Needs from common.smk: config, out(), cpus(), sized(), fail(), SYMMETRIC, ROUNDS, ANY_HALF.
"""

if SYMMETRIC and ROUNDS:
    fail("refine.rounds: pose refinement of symmetry copies is not supported; set symmetry: C1")
if config["asu_mask"] is not None and not SYMMETRIC:
    fail("asu_mask: set only with a symmetry other than C1")


rule symmetry_expand:
    input:
        out("{table}.csv"),
    output:
        out("symmetry/{table}.csv"),
    wildcard_constraints:
        table=f"import/({ANY_HALF}|particles)|junk/({ANY_HALF})",
    params:
        symmetry=config["symmetry"],
    log:
        out("logs/symmetry_expand/{table}.log"),
    benchmark:
        out("benchmarks/symmetry_expand/{table}.tsv")
    threads: cpus("symmetry_expand")
    resources:
        **sized("symmetry_expand"),
    conda:
        "../envs/gmmscape.yaml"
    script:
        "../scripts/symmetry_expand.py"
