namespace Petals.Extensions.AI.Tests;
