"""MTCNN face detection (Zhang et al. 2016): the three networks and their trained weights."""
