-- The work floor (0034): the lower bound of the oldest day holding pending work, which due
-- claims pass so that the days before it are left out of their plans.
SELECT hookrelay.work_floor()
