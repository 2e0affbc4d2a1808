"""netloom.sim"""
