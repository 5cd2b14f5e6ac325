"""Reading and writing the file formats of RELION, EMAN2 and MRC."""

from .common import ParticleRecords, atomic_output
from .cryosparc import read_cs, write_cs_subset
from .eman2 import read_lst, write_lst
from .mrc import MrcStack, map_info, read_map, write_map, write_stack
from .stacks import open_stack
from .star import read_star, write_star

__all__ = [
    "MrcStack",
    "ParticleRecords",
    "atomic_output",
    "map_info",
    "open_stack",
    "read_cs",
    "read_lst",
    "read_map",
    "read_star",
    "write_lst",
    "write_cs_subset",
    "write_map",
    "write_stack",
    "write_star",
]
