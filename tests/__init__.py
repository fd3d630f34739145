
# The clock the app and the stand-ins run on in tests (the app's RUNPOD_RETRY_TIME_SCALE, the stand-ins' time_scale):
# every wait a tenth as long, every rate ten times as high, the same limits met ten times as fast. Tests of the real
# limits opt out with `@pytest.mark.real_time` (the stand-in fixtures then run at 1, and the app with them).
TEST_TIME_SCALE = 0.1
