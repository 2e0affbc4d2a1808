"""netloom.bench"""
