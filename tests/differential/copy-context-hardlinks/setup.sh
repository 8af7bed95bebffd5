mkdir -p ctx/d && echo a > ctx/a && ln ctx/a ctx/b && ln ctx/a ctx/d/c && echo x > ctx/x
