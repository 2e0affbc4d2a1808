"""netloom.store"""
