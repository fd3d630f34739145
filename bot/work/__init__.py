"""The app's work after the ack: retrying (rules, exactly once, budget), following jobs, keeping alerts current, bulk
runs, storms; and the runtime that wires them.
"""
