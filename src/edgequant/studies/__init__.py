"""Studies that combine the stages: the PTQ/Winograd/sensitivity lab, QAT to a real runtime, and
the per-layer error view of a runtime's own int8 execution.

``quant/`` holds the techniques and the simulator and imports no runtime; what here runs a
runtime goes through the registry (``edgequant.backends``).
"""
