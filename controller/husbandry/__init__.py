"""The husbandry wing: the lab's care of the animals around the sessions (DESIGN §13).

Weighings and baselines, water, solenoid calibrations, cohort schedules with shifts, the
day's view and the welfare report, and the register of the boxes they happen in.

Every record here is history: rows are added, never changed, so what the lab knew
on any day can be shown again. :mod:`.models` holds the tables; each other module
one rule of the lab.
"""
