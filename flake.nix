{
  description = "chatkit-backend: ChatKit-style chat and workflow backend on Effect";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachDefaultSystem (system:
      let
        pkgs = import nixpkgs { inherit system; };
      in
      {
        # `nix develop`: Node 20, PostgreSQL 15 and Redis 7 for running the real-service suites.
        devShells.default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_20
            pkgs.postgresql_15
            pkgs.redis
          ];
          shellHook = ''
            export TEST_DATABASE_URL="''${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chatkit_test}"
            export TEST_REDIS_URL="''${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
            echo "chatkit-backend dev shell: node $(node --version), $(postgres --version), $(redis-server --version | cut -d' ' -f3)"
          '';
        };
      });
}
