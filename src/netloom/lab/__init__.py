"""netloom.lab"""
