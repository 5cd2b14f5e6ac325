"""Rule gmm_neutral: the last level as the neutral GMM, as text, PDB pseudo-atoms and MRC."""

import shutil
from typing import Any

from rulekit import Progress, run

from gmmscape import gmmio


def main(smk: Any, progress: Progress) -> None:
    model, box, apix = gmmio.read_text(smk.input[0])
    shutil.copyfile(smk.input[0], smk.output.text)
    gmmio.write_pdb(smk.output.pdb, model, box, apix)
    gmmio.write_density(smk.output.density, model, box, apix)
    progress(f"neutral GMM: {len(model)} Gaussians, box {box}, {apix:.3f} A/pixel")


run(main)
