"""netloom.cli"""
