"""netloom.flows"""
