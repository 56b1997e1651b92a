"""Refinement proper: the composite target T = w*T_data + T_restraints, the
L-BFGS minimiser, macro cycles, the weight protocol around them and the
checkpoint that lets a killed run resume.  Only arrays, a data term and a
restraint source come in; files and parameters stay with the command."""
