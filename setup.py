"""Only for what pyproject.toml cannot say: ship .streamlit/config.toml beside the installed app.py.

Streamlit reads the config in the main script's folder (after ~/.streamlit and the working folder's), so an
installed `notespace app` keeps the privacy settings wherever it is started.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

STREAMLIT_CONFIG = Path(".streamlit") / "config.toml"


class BuildPyWithStreamlitConfig(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / STREAMLIT_CONFIG
        self.mkpath(str(target.parent))
        self.copy_file(str(STREAMLIT_CONFIG), str(target))

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / STREAMLIT_CONFIG)]


setup(cmdclass={"build_py": BuildPyWithStreamlitConfig})
