namespace Petals.Server.Http.Tests;
