"""netloom.datapath"""
