"""netloom.agent"""
