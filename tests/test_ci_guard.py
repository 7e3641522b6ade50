pytest_plugins = ["pytester"]


def test_a_skipped_browser_test_fails_in_ci(pytester, monkeypatch):
    pytester.makeconftest('pytest_plugins = ["tests.ci_guard"]')
    pytester.makeini("[pytest]\nmarkers =\n    browser: x\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.browser
        def test_needs_chromium():
            pytest.skip("no chromium")

        def test_plain_skip():
            pytest.skip("fine anywhere")
        """
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_inprocess("-p", "no:django")
    result.assert_outcomes(failed=1, skipped=1)


def test_the_same_skip_is_a_skip_outside_ci(pytester, monkeypatch):
    pytester.makeconftest('pytest_plugins = ["tests.ci_guard"]')
    pytester.makeini("[pytest]\nmarkers =\n    browser: x\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.browser
        def test_needs_chromium():
            pytest.skip("no chromium")
        """
    )
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_inprocess("-p", "no:django")
    result.assert_outcomes(skipped=1)
