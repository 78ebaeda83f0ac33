"""The hardware a run happens on: the CPU profile (INT8 class) today.

Example:
    >>> from edgequant.hw import cpu_profile
    >>> cpu_profile().int8_class != ""
    True
"""

from edgequant.hw.cpu import CpuProfile, cpu_flags, cpu_profile, int8_class, parse_cpuinfo

__all__ = ["CpuProfile", "cpu_flags", "cpu_profile", "int8_class", "parse_cpuinfo"]
