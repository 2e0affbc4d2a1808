"""netloom.packet"""
