"""netloom.api"""
