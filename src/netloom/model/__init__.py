"""netloom.model"""
