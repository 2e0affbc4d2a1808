"""netloom.topology"""
