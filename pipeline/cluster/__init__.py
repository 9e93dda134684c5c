"""Scale-out on Ray: a graph's streams (``--sources``) or input files (``--inputs``) shared
among worker actors on many machines. Frames never leave the worker that decodes them;
only graphs, stream lists, events, figures and file names cross the network.

Ray is imported here only when ``vidgraph run --cluster`` asks for it.
"""
